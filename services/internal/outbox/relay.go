package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/internal/backoff"
)

// Handler delivers a batch of entries and returns one error per entry, in
// order: nil for each entry it delivered. A nil slice means all were
// delivered. Wrap an error with RetryAfter to choose when the entry is tried
// again. Errors are stored in the outbox and logged, so they must not
// contain the payload.
type Handler func(ctx context.Context, entries []Entry) []error

// Relay delivers the messages of one schema's outbox to a Handler. Set the
// fields, then call Register (optional) and Run.
type Relay struct {
	Pool    *pgxpool.Pool
	Schema  string
	Topics  []string // deliver only these topics; all when empty
	Handler Handler

	BatchSize    int           // entries per Handler call; default 100
	PollInterval time.Duration // how often to look without a notification; default 1s
	MinBackoff   time.Duration // delay after a first failure; default 1s
	MaxBackoff   time.Duration // longest delay between attempts; default 5m
	Logger       *slog.Logger  // default slog.Default()

	once    sync.Once
	initErr error
	log     *slog.Logger
	sql     struct{ claim, nextDue, deleteDone, reschedule string }
	metrics *metrics
}

// listenRetryMax bounds the wait between attempts to re-establish LISTEN.
const listenRetryMax = 30 * time.Second

// maxErrorLen bounds the error text stored in last_error.
const maxErrorLen = 1000

// init validates r, fills in defaults and prepares what Run and Register
// share.
func (r *Relay) init() error {
	r.once.Do(func() {
		switch {
		case r.Pool == nil:
			r.initErr = errors.New("outbox: Relay.Pool is nil")
		case r.Schema == "":
			r.initErr = errors.New("outbox: Relay.Schema is empty")
		case r.Handler == nil:
			r.initErr = errors.New("outbox: Relay.Handler is nil")
		}
		r.BatchSize = cmp.Or(r.BatchSize, 100)
		r.PollInterval = cmp.Or(r.PollInterval, time.Second)
		r.MinBackoff = cmp.Or(r.MinBackoff, time.Second)
		r.MaxBackoff = max(cmp.Or(r.MaxBackoff, 5*time.Minute), r.MinBackoff)
		r.log = cmp.Or(r.Logger, slog.Default()).With("schema", r.Schema)
		r.metrics = newMetrics(r)

		t := table(r.Schema)
		// $1: topics, NULL for all.
		r.sql.claim = fmt.Sprintf(`
			SELECT o.id, o.topic, o.key, o.payload, o.attempts, o.created_at
			FROM %[1]s o
			WHERE o.next_attempt_at <= now()
			  AND ($1::text[] IS NULL OR o.topic = ANY($1))
			  AND (o.key = '' OR NOT EXISTS (
			        SELECT FROM %[1]s older
			        WHERE older.topic = o.topic AND older.key = o.key AND older.id < o.id))
			ORDER BY o.next_attempt_at, o.id
			LIMIT $2
			FOR UPDATE OF o SKIP LOCKED`, t)
		// Run in the claim's transaction: now() is the claim's instant, so a
		// row that became due since then counts (a negative wait: claim
		// again at once), while rows due at the claim but locked by another
		// relay do not.
		r.sql.nextDue = fmt.Sprintf(`
			SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - clock_timestamp())::float8
			FROM %s
			WHERE next_attempt_at > now() AND ($1::text[] IS NULL OR topic = ANY($1))`, t)
		r.sql.deleteDone = fmt.Sprintf(`DELETE FROM %s WHERE id = ANY($1)`, t)
		r.sql.reschedule = fmt.Sprintf(`
			UPDATE %s o
			SET attempts = o.attempts + 1,
			    last_error = f.error,
			    next_attempt_at = clock_timestamp() + f.delay_ms * interval '1 millisecond'
			FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS f(id, error, delay_ms)
			WHERE o.id = f.id`, t)
	})
	return r.initErr
}

// Run delivers messages until ctx is done, then returns nil; it returns an
// error only when r is misconfigured. Errors on the way (database down,
// LISTEN connection lost) are logged and retried.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.init(); err != nil {
		return err
	}
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.listen(ctx, wake) })

	for {
		// After a batch there may be more (wait 0); when nothing was due,
		// sleep until a failed entry is due again or a notification comes.
		wait, err := r.deliverBatch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.log.ErrorContext(ctx, "outbox: delivery round failed", "err", err)
			wait = r.PollInterval
		}
		if wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-wake:
			case <-timer.C:
			}
			timer.Stop()
		}
	}
}

func (r *Relay) topics() []string {
	if len(r.Topics) == 0 {
		return nil // NULL: every topic
	}
	return r.Topics
}

// untilNextDue returns how long until an entry not due at the claim is
// due, at most PollInterval; tx is the claim's transaction.
func (r *Relay) untilNextDue(ctx context.Context, tx pgx.Tx) (time.Duration, error) {
	var secs *float64
	if err := tx.QueryRow(ctx, r.sql.nextDue, r.topics()).Scan(&secs); err != nil {
		return 0, err
	}
	if secs == nil {
		return r.PollInterval, nil
	}
	return min(time.Duration(*secs*float64(time.Second))+time.Millisecond, r.PollInterval), nil
}

// deliverBatch claims up to BatchSize due entries, hands them to the
// Handler and records the outcome, all in one transaction whose row locks
// keep other relays off these entries. It returns how long to wait before
// the next claim: 0 after a batch (there may be more), else until the next
// entry is due.
func (r *Relay) deliverBatch(ctx context.Context) (time.Duration, error) {
	tx, err := r.Pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit

	rows, _ := tx.Query(ctx, r.sql.claim, r.topics(), r.BatchSize)
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := row.Scan(&e.ID, &e.Topic, &e.Key, &e.Payload, &e.Attempts, &e.CreatedAt)
		return e, err
	})
	if err != nil {
		return 0, err
	}
	if len(entries) == 0 {
		return r.untilNextDue(ctx, tx)
	}

	results := r.Handler(ctx, entries)
	if results != nil && len(results) != len(entries) {
		err := fmt.Errorf("outbox: handler returned %d results for %d entries", len(results), len(entries))
		results = make([]error, len(entries))
		for i := range results {
			results[i] = err
		}
	}

	// Record the outcome even when ctx was cancelled while the handler ran:
	// otherwise delivered entries would be delivered again.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var done, failedIDs, delays []int64
	var failedErrs []string
	for i, e := range entries {
		if results == nil || results[i] == nil {
			done = append(done, e.ID)
			continue
		}
		delay := r.backoff(e.Attempts + 1)
		var ra *retryAfterError
		if errors.As(results[i], &ra) {
			delay = max(ra.after, 0)
		}
		msg := truncate(results[i].Error())
		failedIDs = append(failedIDs, e.ID)
		failedErrs = append(failedErrs, msg)
		delays = append(delays, delay.Milliseconds())
		r.log.WarnContext(rctx, "outbox: delivery failed", "id", e.ID, "topic", e.Topic, "key", e.Key,
			"attempts", e.Attempts+1, "retry_in", delay, "err", msg)
	}
	if len(done) > 0 {
		if _, err := tx.Exec(rctx, r.sql.deleteDone, done); err != nil {
			return 0, err
		}
	}
	if len(failedIDs) > 0 {
		if _, err := tx.Exec(rctx, r.sql.reschedule, failedIDs, failedErrs, delays); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(rctx); err != nil {
		return 0, err
	}
	for i, e := range entries {
		r.metrics.observe(e.Topic, results == nil || results[i] == nil)
	}
	return 0, nil
}

// backoff returns the delay after the given number of failures (see
// backoff.Policy: MinBackoff doubled per earlier failure, capped at
// MaxBackoff, jittered).
func (r *Relay) backoff(failures int) time.Duration {
	return backoff.Policy{Min: r.MinBackoff, Max: r.MaxBackoff}.Delay(failures)
}

// truncate makes err storable as text and bounded in length.
func truncate(err string) string {
	err = strings.ToValidUTF8(strings.ReplaceAll(err, "\x00", ""), "?")
	if len(err) <= maxErrorLen {
		return err
	}
	cut := maxErrorLen
	for cut > 0 && !utf8.RuneStart(err[cut]) {
		cut--
	}
	return err[:cut] + "…"
}

// listen keeps a connection of its own LISTENing on the schema's channel
// and signals wake on every notification, reconnecting when the connection
// is lost. Polling in Run covers the gaps.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	retry := 100 * time.Millisecond
	for {
		listening, err := r.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		if listening {
			retry = 100 * time.Millisecond
		}
		r.log.WarnContext(ctx, "outbox: LISTEN connection lost; polling until it is back", "err", err, "retry_in", retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, listenRetryMax)
	}
}

// listenOnce runs one LISTEN connection until it fails; listening reports
// whether LISTEN succeeded.
func (r *Relay) listenOnce(ctx context.Context, wake chan<- struct{}) (listening bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, r.Pool.Config().ConnConfig)
	if err != nil {
		return false, err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel(r.Schema)}.Sanitize()); err != nil {
		return false, err
	}
	signal(wake) // catch up on what was enqueued while nobody listened
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true, err
		}
		signal(wake)
	}
}

// signal wakes Run without blocking; wakes coalesce.
func signal(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// Stats returns the depth and lag of the relay's outbox; see Stats.
func (r *Relay) Stats(ctx context.Context) (depth int, oldestPendingAge time.Duration, err error) {
	return Stats(ctx, r.Pool, r.Schema)
}
