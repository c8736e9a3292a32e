package kvsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
)

// Source says what KV should hold (see token.KVSource).
type Source interface {
	// Desired returns the wanted values of keys; absent keys should not exist.
	Desired(ctx context.Context, q db.DBTX, keys []string) (map[string][]byte, error)
	// All returns every key KV should hold.
	All(ctx context.Context, q db.DBTX) (map[string][]byte, error)
	// Owns reports whether a key is the Source's to manage.
	Owns(key string) bool
}

// Syncer is the outbox handler of the KV topic and the reconciler.
type Syncer struct {
	Pool        *pgxpool.Pool
	Schema      string // the outbox's schema
	Topic       string // the outbox topic of KV messages
	Source      Source
	Client      *Client
	Fingerprint func([]byte) string
	Log         *slog.Logger
	// RoutesKey is coalesced: written at most once per RoutesInterval.
	RoutesKey      string
	RoutesInterval time.Duration

	mu             sync.Mutex
	lastRoutes     time.Time
	failures       int64
	lastErr        string
	lastReconcile  time.Time
	reconcileEvery time.Duration
	lastDrift      int64
	metricsOnce    sync.Once
	writes, dels   prometheus.Counter
	failCount      prometheus.Counter
	driftCount     prometheus.Counter
	reconcileGauge prometheus.Gauge
}

func (s *Syncer) initMetrics() {
	s.metricsOnce.Do(func() {
		s.writes = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tokenmanager", Subsystem: "kv", Name: "writes_total", Help: "KV keys written."})
		s.dels = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tokenmanager", Subsystem: "kv", Name: "deletes_total", Help: "KV keys deleted."})
		s.failCount = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tokenmanager", Subsystem: "kv", Name: "sync_failures_total", Help: "Failed KV sync rounds."})
		s.driftCount = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tokenmanager", Subsystem: "kv", Name: "drift_keys_total", Help: "KV keys the reconciler found different from PostgreSQL."})
		s.reconcileGauge = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tokenmanager", Subsystem: "kv", Name: "last_reconcile_timestamp_seconds", Help: "When the reconciler last finished."})
	})
}

// Register registers the sync metrics (plus the 429 pauses) with reg.
func (s *Syncer) Register(reg prometheus.Registerer) error {
	s.initMetrics()
	pauses := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "tokenmanager", Subsystem: "kv", Name: "rate_limited_total",
		Help: "HTTP 429 answers from Cloudflare (each pauses all calls)."}, func() float64 { return float64(s.Client.Gate.Pauses()) })
	for _, c := range []prometheus.Collector{s.writes, s.dels, s.failCount, s.driftCount, s.reconcileGauge, pauses} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (s *Syncer) fail(err error) {
	s.initMetrics()
	s.failCount.Inc()
	s.mu.Lock()
	s.failures++
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// Handle is the outbox handler: it syncs the batch's keys to their current
// values in PostgreSQL.
func (s *Syncer) Handle(ctx context.Context, entries []outbox.Entry) []error {
	s.initMetrics()
	results := make([]error, len(entries))
	var keys []string
	batchIDs := make([]int64, 0, len(entries))
	for i, e := range entries {
		if e.Key == s.RoutesKey && s.RoutesInterval > 0 {
			s.mu.Lock()
			wait := time.Until(s.lastRoutes.Add(s.RoutesInterval))
			s.mu.Unlock()
			if wait > 0 {
				// Coalesce: later changes pile up behind this message and
				// the next write carries all of them.
				results[i] = outbox.RetryAfter(wait, errors.New("routes: coalescing"))
				continue
			}
		}
		if !slices.Contains(keys, e.Key) {
			keys = append(keys, e.Key)
		}
		batchIDs = append(batchIDs, e.ID)
	}
	if len(keys) == 0 {
		return results
	}
	if err := s.Client.Gate.Wait(ctx); err != nil {
		return s.allFailed(entries, results, err)
	}

	// One snapshot: the values, and which pending messages they answer.
	var want map[string][]byte
	var covered []int64
	err := db.InTxWith(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if want, err = s.Source.Desired(ctx, tx, keys); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, fmt.Sprintf(`SELECT id FROM %s WHERE topic = $1 AND key = ANY($2)`,
			pgx.Identifier{s.Schema, "outbox"}.Sanitize()), s.Topic, keys)
		covered, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		return s.allFailed(entries, results, fmt.Errorf("read wanted state: %w", err))
	}
	var puts []Pair
	var dels []string
	for _, k := range keys {
		if v, ok := want[k]; ok {
			puts = append(puts, Pair{Key: k, Value: v, Fingerprint: s.Fingerprint(v)})
		} else {
			dels = append(dels, k)
		}
	}
	// Deletes first: a revocation must not wait behind a large write.
	if len(dels) > 0 {
		if err := s.Client.Delete(ctx, dels); err != nil {
			return s.allFailed(entries, results, err)
		}
		s.dels.Add(float64(len(dels)))
	}
	if len(puts) > 0 {
		if err := s.Client.Put(ctx, puts); err != nil {
			return s.allFailed(entries, results, err)
		}
		s.writes.Add(float64(len(puts)))
	}
	s.mu.Lock()
	if slices.Contains(keys, s.RoutesKey) {
		s.lastRoutes = time.Now()
	}
	// A delivery went through: the last error is history (Failures keeps
	// the count), so health reports a failing sync, not one that failed once.
	s.lastErr = ""
	s.mu.Unlock()
	// Messages for these keys that were committed before the snapshot are
	// answered by this write; drop them (not those of this batch, which the
	// relay deletes, and which it holds locked).
	var extra []int64
	for _, id := range covered {
		if !slices.Contains(batchIDs, id) {
			extra = append(extra, id)
		}
	}
	if len(extra) > 0 {
		if _, err := s.Pool.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = ANY($1)`,
			pgx.Identifier{s.Schema, "outbox"}.Sanitize()), extra); err != nil {
			s.log().WarnContext(ctx, "kvsync: dropping answered messages", "err", err) // harmless: they sync again
		}
	}
	return results
}

func (s *Syncer) allFailed(entries []outbox.Entry, results []error, err error) []error {
	s.fail(err)
	var d time.Duration
	if errors.Is(err, ErrRateLimited) {
		d = s.Client.Gate.Remaining()
	}
	for i := range entries {
		if results[i] == nil {
			if d > 0 {
				results[i] = outbox.RetryAfter(d, err)
			} else {
				results[i] = err
			}
		}
	}
	return results
}

func (s *Syncer) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// Reconcile compares the namespace with PostgreSQL and enqueues a sync of
// every owned key that is missing, stale (fingerprint differs) or has no
// source. It returns the number of such keys.
func (s *Syncer) Reconcile(ctx context.Context) (int, error) {
	s.initMetrics()
	if err := s.Client.Gate.Wait(ctx); err != nil {
		return 0, err
	}
	listed, err := s.Client.List(ctx)
	if err != nil {
		s.fail(err)
		return 0, err
	}
	var want map[string][]byte
	if err := db.InTxWith(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		want, err = s.Source.All(ctx, tx)
		return err
	}); err != nil {
		return 0, err
	}
	have := map[string]string{}
	for _, l := range listed {
		if s.Source.Owns(l.Name) {
			have[l.Name] = l.Fingerprint
		}
	}
	var drift []string
	for k, v := range want {
		if fp, ok := have[k]; !ok || fp != s.Fingerprint(v) {
			drift = append(drift, k)
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			drift = append(drift, k)
		}
	}
	slices.Sort(drift)
	if len(drift) > 0 {
		msgs := make([]outbox.Message, len(drift))
		for i, k := range drift {
			msgs[i] = outbox.Message{Topic: s.Topic, Key: k, Payload: map[string]string{"reason": "reconcile"}}
		}
		if err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error { return outbox.Enqueue(ctx, tx, s.Schema, msgs...) }); err != nil {
			return 0, err
		}
		s.log().InfoContext(ctx, "kvsync: drift found; syncing", "keys", len(drift))
	}
	s.driftCount.Add(float64(len(drift)))
	s.reconcileGauge.SetToCurrentTime()
	s.mu.Lock()
	s.lastReconcile = time.Now()
	s.lastDrift = int64(len(drift))
	s.mu.Unlock()
	return len(drift), nil
}

// RunReconciler reconciles now and every interval until ctx ends.
func (s *Syncer) RunReconciler(ctx context.Context, interval time.Duration) {
	s.mu.Lock()
	s.reconcileEvery = interval
	s.mu.Unlock()
	for {
		if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log().WarnContext(ctx, "kvsync: reconcile failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Status is the sync's state for GetSyncStatus and health.
type Status struct {
	Depth           int
	OldestPending   time.Duration
	Failures        int64  // failed delivery and reconcile rounds since start
	LastError       string // of the last failed round; "" once a delivery succeeded after it
	LastReconcileAt time.Time
	LastDrift       int64
	// ReconcileInterval is the reconciler's period; 0 until it started.
	ReconcileInterval time.Duration
}

// Status reports the outbox depth and age of the KV topic and the counters.
func (s *Syncer) Status(ctx context.Context) (Status, error) {
	var st Status
	var age float64
	err := s.Pool.QueryRow(ctx, fmt.Sprintf(`
		SELECT count(*), COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::float8
		FROM %s WHERE topic = $1`, pgx.Identifier{s.Schema, "outbox"}.Sanitize()), s.Topic).Scan(&st.Depth, &age)
	if err != nil {
		return st, err
	}
	st.OldestPending = time.Duration(age * float64(time.Second))
	s.mu.Lock()
	st.Failures, st.LastError, st.LastReconcileAt, st.LastDrift = s.failures, s.lastErr, s.lastReconcile, s.lastDrift
	st.ReconcileInterval = s.reconcileEvery
	s.mu.Unlock()
	return st, nil
}
