package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
)

const schema = "svc"

// newPool returns a pool on a fresh database whose svc schema has an outbox
// created by TableSQL, as a service migration would.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return dbtest.NewPool(t, migrate.Set{Schema: schema, FS: fstest.MapFS{
		"0001_outbox.sql": {Data: []byte(outbox.TableSQL(schema))},
	}})
}

// enqueue commits msgs in a transaction of their own.
func enqueue(t *testing.T, pool *pgxpool.Pool, msgs ...outbox.Message) {
	t.Helper()
	require.NoError(t, db.InTx(context.Background(), pool, func(tx pgx.Tx) error {
		return outbox.Enqueue(context.Background(), tx, schema, msgs...)
	}))
}

// recorder is a Handler that records what it is given and fails while fail
// says so.
type recorder struct {
	mu       sync.Mutex
	batches  [][]outbox.Entry
	inFlight map[int64]bool
	overlaps []int64 // ids handed out while already in flight
	fail     func(outbox.Entry) error
	delay    time.Duration
}

func (rec *recorder) handle(ctx context.Context, entries []outbox.Entry) []error {
	rec.mu.Lock()
	if rec.inFlight == nil {
		rec.inFlight = map[int64]bool{}
	}
	for _, e := range entries {
		if rec.inFlight[e.ID] {
			rec.overlaps = append(rec.overlaps, e.ID)
		}
		rec.inFlight[e.ID] = true
	}
	rec.batches = append(rec.batches, entries)
	rec.mu.Unlock()

	time.Sleep(rec.delay)
	errs := make([]error, len(entries))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, e := range entries {
		delete(rec.inFlight, e.ID)
		if rec.fail != nil {
			errs[i] = rec.fail(e)
		}
	}
	return errs
}

// entries returns every entry handed out, in order.
func (rec *recorder) entries() []outbox.Entry {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var all []outbox.Entry
	for _, b := range rec.batches {
		all = append(all, b...)
	}
	return all
}

var discard = slog.New(slog.DiscardHandler)

// run starts r and returns a function that stops it and waits for Run.
func run(t *testing.T, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually fails t unless cond becomes true within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func depth(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	n, _, err := outbox.Stats(context.Background(), pool, schema)
	require.NoError(t, err)
	return n
}

func TestEnqueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	type payload struct {
		Hash string `json:"hash"`
		TTL  int    `json:"ttl,omitempty"`
	}
	tests := []struct {
		name        string
		msg         outbox.Message
		wantPayload string
		wantErr     string
	}{
		{"struct", outbox.Message{Topic: "kv", Key: "token:ab", Payload: payload{Hash: "ab"}}, `{"hash": "ab"}`, ""},
		{"raw JSON", outbox.Message{Topic: "audit", Payload: json.RawMessage(`{"b":[1,2],"a":null}`)}, `{"a": null, "b": [1, 2]}`, ""},
		{"nil payload", outbox.Message{Topic: "kv"}, `null`, ""},
		{"no topic", outbox.Message{Payload: 1}, "", "without a topic"},
		{"unencodable payload", outbox.Message{Topic: "kv", Payload: make(chan int)}, "", "payload of kv message"},
		{"invalid raw JSON", outbox.Message{Topic: "kv", Payload: json.RawMessage(`{`)}, "", "payload of kv message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var id int64
			err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
				if err := outbox.Enqueue(ctx, tx, schema, tt.msg); err != nil {
					return err
				}
				return tx.QueryRow(ctx, "SELECT max(id) FROM svc.outbox").Scan(&id)
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Enqueue() = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			require.NoError(t, err)
			var topic, key, got string
			require.NoError(t, pool.QueryRow(ctx, "SELECT topic, key, payload::text FROM svc.outbox WHERE id = $1", id).
				Scan(&topic, &key, &got))
			if topic != tt.msg.Topic || key != tt.msg.Key || got != tt.wantPayload {
				t.Errorf("stored (%q, %q, %s), want (%q, %q, %s)", topic, key, got, tt.msg.Topic, tt.msg.Key, tt.wantPayload)
			}
		})
	}
}

func TestRelayDeliversCommittedMessagesOnNotify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	rec := &recorder{}
	// With an hour between polls, only NOTIFY can explain a prompt delivery.
	run(t, &outbox.Relay{Logger: discard, Pool: pool, Schema: schema, Handler: rec.handle, PollInterval: time.Hour})

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, outbox.Enqueue(ctx, tx, schema, outbox.Message{Topic: "kv", Key: "rolled-back", Payload: 1}))
	require.NoError(t, tx.Rollback(ctx))

	start := time.Now()
	enqueue(t, pool, outbox.Message{Topic: "kv", Key: "committed", Payload: 2})
	eventually(t, 30*time.Second, "delivery", func() bool { return len(rec.entries()) > 0 })
	t.Logf("delivered %v after commit", time.Since(start))

	// Another commit, well after the relay went back to sleep.
	time.Sleep(50 * time.Millisecond)
	enqueue(t, pool, outbox.Message{Topic: "kv", Key: "later", Payload: 3})
	eventually(t, 5*time.Second, "second delivery", func() bool { return len(rec.entries()) == 2 })

	var keys []string
	for _, e := range rec.entries() {
		keys = append(keys, e.Key)
	}
	if got := strings.Join(keys, ","); got != "committed,later" {
		t.Errorf("delivered %s, want committed,later", got)
	}
	eventually(t, 5*time.Second, "delivered rows deleted", func() bool { return depth(t, pool) == 0 })
}

func TestRelayRetriesFailuresWithBackoff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	errBoom := errors.New("backend unavailable")
	tests := []struct {
		name       string
		fail       func(attempt int) error // error of the n-th attempt (0-based)
		wantTries  int
		minGap     time.Duration // least time between consecutive attempts
		wantStored string        // last_error seen by the last attempt
	}{
		{
			name: "exponential backoff",
			fail: func(n int) error {
				if n < 2 {
					return fmt.Errorf("attempt %d: %w", n, errBoom)
				}
				return nil
			},
			wantTries:  3,
			minGap:     20 * time.Millisecond, // MinBackoff jittered down by half
			wantStored: "attempt 1: backend unavailable",
		},
		{
			name: "retry after",
			fail: func(n int) error {
				if n == 0 {
					return outbox.RetryAfter(400*time.Millisecond, errors.New("HTTP 429"))
				}
				return nil
			},
			wantTries:  2,
			minGap:     400 * time.Millisecond,
			wantStored: "HTTP 429 (retry after 400ms)",
		},
		{
			name: "long error is truncated",
			fail: func(n int) error {
				if n == 0 {
					return errors.New(strings.Repeat("é", 2000))
				}
				return nil
			},
			wantTries:  2,
			wantStored: strings.Repeat("é", 500) + "…",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := newPool(t)
			var (
				mu       sync.Mutex
				attempts []time.Time
				stored   *string
			)
			rec := &recorder{fail: func(e outbox.Entry) error {
				mu.Lock()
				defer mu.Unlock()
				n := len(attempts)
				attempts = append(attempts, time.Now())
				if e.Attempts != n {
					t.Errorf("attempt %d: Entry.Attempts = %d", n, e.Attempts)
				}
				// The row is locked by the relay, but readable.
				if err := pool.QueryRow(ctx, "SELECT last_error FROM svc.outbox WHERE id = $1", e.ID).Scan(&stored); err != nil {
					t.Error(err)
				}
				return tt.fail(n)
			}}
			reg := prometheus.NewPedanticRegistry()
			relay := &outbox.Relay{Logger: discard, Pool: pool, Schema: schema, Handler: rec.handle, PollInterval: time.Hour,
				MinBackoff: 40 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}
			require.NoError(t, relay.Register(reg))
			run(t, relay)
			enqueue(t, pool, outbox.Message{Topic: "kv", Key: "k", Payload: "secret payload"})

			// The delivered counter moves just after the commit that empties
			// the outbox: wait for both.
			eventually(t, 30*time.Second, "delivery", func() bool {
				return depth(t, pool) == 0 && counter(t, reg, "tokenmanager_outbox_delivered_total") == 1
			})
			mu.Lock()
			defer mu.Unlock()
			if len(attempts) != tt.wantTries {
				t.Fatalf("%d attempts, want %d", len(attempts), tt.wantTries)
			}
			for i := 1; i < len(attempts); i++ {
				if gap := attempts[i].Sub(attempts[i-1]); gap < tt.minGap {
					t.Errorf("attempt %d came %v after the previous one, want at least %v", i, gap, tt.minGap)
				}
			}
			if stored == nil || *stored != tt.wantStored {
				t.Errorf("last_error = %v, want %q", stored, tt.wantStored)
			}
			failed := counter(t, reg, "tokenmanager_outbox_failed_total")
			delivered := counter(t, reg, "tokenmanager_outbox_delivered_total")
			if failed != float64(tt.wantTries-1) || delivered != 1 {
				t.Errorf("failed_total = %v, delivered_total = %v; want %d and 1", failed, delivered, tt.wantTries-1)
			}
		})
	}
}

// counter returns the sum of the counter series called name in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestRelaysShareTheWork(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	rec := &recorder{delay: 2 * time.Millisecond}
	for range 2 {
		run(t, &outbox.Relay{Logger: discard, Pool: pool, Schema: schema, Handler: rec.handle, BatchSize: 7, PollInterval: 20 * time.Millisecond})
	}

	const keys, perKey, unkeyed = 5, 20, 100
	var msgs []outbox.Message
	for i := range perKey {
		for k := range keys {
			msgs = append(msgs, outbox.Message{Topic: "kv", Key: fmt.Sprintf("key%d", k), Payload: i})
		}
	}
	for i := range unkeyed {
		msgs = append(msgs, outbox.Message{Topic: "audit", Payload: i})
	}
	for len(msgs) > 0 { // many small transactions, as services write them
		n := min(len(msgs), 9)
		enqueue(t, pool, msgs[:n]...)
		msgs = msgs[n:]
	}
	eventually(t, 20*time.Second, "all deliveries", func() bool { return depth(t, pool) == 0 })

	entries := rec.entries()
	seen := map[int64]bool{}
	lastOfKey := map[string]int{}
	for _, e := range entries {
		if seen[e.ID] {
			t.Errorf("message %d delivered twice", e.ID)
		}
		seen[e.ID] = true
		if e.Key == "" {
			continue
		}
		var n int
		require.NoError(t, json.Unmarshal(e.Payload, &n))
		if last, ok := lastOfKey[e.Key]; ok && n != last+1 {
			t.Errorf("%s: message %d delivered after %d", e.Key, n, last)
		}
		lastOfKey[e.Key] = n
	}
	if len(seen) != keys*perKey+unkeyed {
		t.Errorf("%d messages delivered, want %d", len(seen), keys*perKey+unkeyed)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.overlaps) > 0 {
		t.Errorf("messages %v were handed to two relays at once", rec.overlaps)
	}
}

func TestRelayResumesAfterBeingStopped(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	var msgs []outbox.Message
	for i := range 60 {
		msgs = append(msgs, outbox.Message{Topic: "audit", Payload: i})
	}
	enqueue(t, pool, msgs...)

	first := &recorder{delay: 20 * time.Millisecond}
	stop := run(t, &outbox.Relay{Logger: discard, Pool: pool, Schema: schema, Handler: first.handle, BatchSize: 5})
	eventually(t, 5*time.Second, "some deliveries", func() bool { return len(first.entries()) >= 10 })
	stop()
	if n := len(first.entries()); n >= len(msgs) {
		t.Fatalf("first relay delivered all %d messages before it was stopped", n)
	}

	second := &recorder{}
	run(t, &outbox.Relay{Logger: discard, Pool: pool, Schema: schema, Handler: second.handle})
	eventually(t, 5*time.Second, "the rest", func() bool { return depth(t, pool) == 0 })

	seen := map[int64]int{}
	for _, e := range append(first.entries(), second.entries()...) {
		seen[e.ID]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("message %d delivered %d times", id, n)
		}
	}
	if len(seen) != len(msgs) {
		t.Errorf("%d distinct messages delivered, want %d", len(seen), len(msgs))
	}
}

func TestRelayListensAgainAfterConnectionLoss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	rec := &recorder{}
	run(t, &outbox.Relay{Logger: discard, Pool: pool, Schema: schema, Handler: rec.handle, PollInterval: time.Hour})

	listener := func() (pid int) {
		err := pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN "svc_outbox"'`).Scan(&pid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return pid
	}
	var old int
	eventually(t, 5*time.Second, "LISTEN", func() bool { old = listener(); return old != 0 })
	_, err := pool.Exec(ctx, "SELECT pg_terminate_backend($1)", old)
	require.NoError(t, err)
	eventually(t, 5*time.Second, "LISTEN again", func() bool { pid := listener(); return pid != 0 && pid != old })

	enqueue(t, pool, outbox.Message{Topic: "kv", Payload: 1})
	eventually(t, 5*time.Second, "delivery after reconnecting", func() bool { return len(rec.entries()) == 1 })
}

func TestStatsAndMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	enqueue(t, pool, outbox.Message{Topic: "kv", Payload: 1}, outbox.Message{Topic: "audit", Payload: 2})
	time.Sleep(20 * time.Millisecond)

	kv := &recorder{}
	audit := &recorder{fail: func(outbox.Entry) error { return errors.New("down") }}
	reg := prometheus.NewPedanticRegistry()
	kvRelay := &outbox.Relay{Logger: discard, Pool: pool, Schema: schema, Topics: []string{"kv"}, Handler: kv.handle, MinBackoff: time.Hour}
	auditRelay := &outbox.Relay{Logger: discard, Pool: pool, Schema: schema, Topics: []string{"audit"}, Handler: audit.handle, MinBackoff: time.Hour}
	require.NoError(t, kvRelay.Register(reg))
	require.NoError(t, auditRelay.Register(reg)) // same schema, same registry

	n, age, err := kvRelay.Stats(ctx)
	require.NoError(t, err)
	if n != 2 || age < 20*time.Millisecond || age > time.Minute {
		t.Errorf("Stats() = %d, %v; want 2 and about 20ms", n, age)
	}
	want := `
# HELP tokenmanager_outbox_pending_messages Messages waiting in the outbox.
# TYPE tokenmanager_outbox_pending_messages gauge
tokenmanager_outbox_pending_messages{schema="svc"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenmanager_outbox_pending_messages"); err != nil {
		t.Error(err)
	}

	run(t, kvRelay)
	run(t, auditRelay)
	eventually(t, 5*time.Second, "both outcomes recorded", func() bool {
		return counter(t, reg, "tokenmanager_outbox_delivered_total") == 1 && counter(t, reg, "tokenmanager_outbox_failed_total") == 1
	})
	want = `
# HELP tokenmanager_outbox_delivered_total Outbox messages delivered and deleted.
# TYPE tokenmanager_outbox_delivered_total counter
tokenmanager_outbox_delivered_total{schema="svc",topic="kv"} 1
# HELP tokenmanager_outbox_failed_total Outbox delivery attempts that failed and were rescheduled.
# TYPE tokenmanager_outbox_failed_total counter
tokenmanager_outbox_failed_total{schema="svc",topic="audit"} 1
# HELP tokenmanager_outbox_pending_messages Messages waiting in the outbox.
# TYPE tokenmanager_outbox_pending_messages gauge
tokenmanager_outbox_pending_messages{schema="svc"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"tokenmanager_outbox_delivered_total", "tokenmanager_outbox_failed_total", "tokenmanager_outbox_pending_messages"); err != nil {
		t.Error(err)
	}
}

func TestRelayRejectsIncompleteConfig(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	handler := (&recorder{}).handle
	tests := []struct {
		name  string
		relay *outbox.Relay
		want  string
	}{
		{"no pool", &outbox.Relay{Schema: schema, Handler: handler}, "Pool is nil"},
		{"no schema", &outbox.Relay{Pool: pool, Handler: handler}, "Schema is empty"},
		{"no handler", &outbox.Relay{Pool: pool, Schema: schema}, "Handler is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.relay.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}
