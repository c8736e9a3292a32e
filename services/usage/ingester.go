package usage

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Ingester is the single writer of usage events. Requests hand their
// events to it and wait; it commits whatever has queued up — many requests'
// events — in one transaction (one multi-row insert … on conflict do
// nothing, plus the rollup upserts), then answers each request. So an
// acknowledgement costs a share of one commit, and under load the batches
// grow by themselves while the previous commit runs; nothing waits for a
// timer.
type Ingester struct {
	pool    *pgxpool.Pool
	log     *slog.Logger
	maxRows int
	// OnCommit, if set, receives the newest use per token hash of every
	// committed batch (the last_used batcher).
	onCommit func(map[string]time.Time)

	mu     sync.RWMutex // guards closed against Submit's send
	closed bool
	jobs   chan *job
	done   chan struct{}

	partsMu sync.Mutex
	parts   map[time.Time]bool // days known to have a partition
}

type job struct {
	events []storedEvent
	result chan ingestResult // buffered: the writer never blocks on it
}

type ingestResult struct {
	accepted, duplicates int
	err                  error
}

// IngesterOptions tune an Ingester.
type IngesterOptions struct {
	// MaxRows bounds the events of one transaction (default 5000).
	MaxRows int
	// OnCommit receives the newest use per token hash after each commit.
	OnCommit func(map[string]time.Time)
}

// NewIngester starts the writer goroutine; Close stops it.
func NewIngester(pool *pgxpool.Pool, log *slog.Logger, opts IngesterOptions) *Ingester {
	if opts.MaxRows <= 0 {
		opts.MaxRows = 5000
	}
	in := &Ingester{
		pool: pool, log: log, maxRows: opts.MaxRows, onCommit: opts.OnCommit,
		jobs:  make(chan *job, 4096),
		done:  make(chan struct{}),
		parts: map[time.Time]bool{},
	}
	go in.run()
	return in
}

var errClosed = errs.Unavailable("Usage ingest is shutting down; retry")

// Submit stores events (at most MaxBatchEvents per call is expected) and
// returns once the transaction holding them has committed: accepted new
// events and duplicates of events stored before. If ctx ends first the
// events may still be committed; a retry with the same event ids is then
// counted as duplicates, never stored twice.
func (in *Ingester) Submit(ctx context.Context, evs []storedEvent) (accepted, duplicates int, err error) {
	j := &job{events: evs, result: make(chan ingestResult, 1)}
	in.mu.RLock()
	if in.closed {
		in.mu.RUnlock()
		return 0, 0, errClosed
	}
	select {
	case in.jobs <- j:
		in.mu.RUnlock()
	case <-ctx.Done():
		in.mu.RUnlock()
		return 0, 0, ctx.Err()
	}
	select {
	case r := <-j.result:
		return r.accepted, r.duplicates, r.err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// Close stops accepting events, commits every event already submitted
// and returns when the writer has finished.
func (in *Ingester) Close() {
	in.mu.Lock()
	if !in.closed {
		in.closed = true
		close(in.jobs)
	}
	in.mu.Unlock()
	<-in.done
}

func (in *Ingester) run() {
	defer close(in.done)
	for j := range in.jobs {
		batch := []*job{j}
		rows := len(j.events)
	gather:
		for rows < in.maxRows {
			select {
			case j2, ok := <-in.jobs:
				if !ok {
					break gather
				}
				batch = append(batch, j2)
				rows += len(j2.events)
			default:
				break gather
			}
		}
		in.commit(batch)
	}
}

// commitTimeout bounds one batch's transaction, independent of the
// requests waiting for it.
const commitTimeout = 15 * time.Second

func (in *Ingester) commit(batch []*job) {
	// Deduplicate across the batch: the first occurrence is stored, later
	// ones are duplicates.
	type ref struct{ job, ev int }
	var evs []storedEvent
	var refs []ref
	seen := map[string]bool{}
	results := make([]ingestResult, len(batch))
	for ji, j := range batch {
		for ei, e := range j.events {
			k := dedupKey(e.EventID, e.UsedAt)
			if seen[k] {
				results[ji].duplicates++
				continue
			}
			seen[k] = true
			evs = append(evs, e)
			refs = append(refs, ref{ji, ei})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	start := time.Now()
	isNew, err := in.store(ctx, evs)
	if err != nil {
		in.log.Error("usage batch not committed", "events", len(evs), "requests", len(batch), "error", err)
		for _, j := range batch {
			// Classified at the RPC boundary (errs.ToStatus): a lost or
			// refused connection and commitTimeout answer Unavailable.
			j.result <- ingestResult{err: fmt.Errorf("usage batch not committed: %w", err)}
		}
		return
	}
	newest := map[string]time.Time{}
	for i, r := range refs {
		if isNew[i] {
			results[r.job].accepted++
			e := evs[i]
			if e.UsedAt.After(newest[e.TokenHash]) {
				newest[e.TokenHash] = e.UsedAt
			}
		} else {
			results[r.job].duplicates++
		}
	}
	in.log.Debug("usage batch committed", "events", len(evs), "requests", len(batch), "duration_ms", time.Since(start).Milliseconds())
	for i, j := range batch {
		j.result <- results[i]
	}
	if in.onCommit != nil && len(newest) > 0 {
		in.onCommit(newest)
	}
}

// store writes evs in one transaction, creating missing partitions first.
func (in *Ingester) store(ctx context.Context, evs []storedEvent) ([]bool, error) {
	for attempt := 0; ; attempt++ {
		if err := in.ensurePartitions(ctx, evs); err != nil {
			return nil, err
		}
		// One statement in autocommit: atomic, and committed when it returns.
		isNew, err := insertEvents(ctx, in.pool, evs)
		if err == nil {
			return isNew, nil
		}
		// A partition dropped or never made (another instance's retention
		// run, a restored database): forget what we knew and try once more.
		if attempt == 0 && db.IsCheckViolation(err) {
			in.partsMu.Lock()
			clear(in.parts)
			in.partsMu.Unlock()
			continue
		}
		return nil, err
	}
}

func (in *Ingester) ensurePartitions(ctx context.Context, evs []storedEvent) error {
	days := map[time.Time]bool{}
	in.partsMu.Lock()
	for _, e := range evs {
		d := dayOf(e.UsedAt)
		if !in.parts[d] {
			days[d] = true
		}
	}
	in.partsMu.Unlock()
	for d := range days {
		if err := ensurePartition(ctx, in.pool, d); err != nil {
			return err
		}
		in.partsMu.Lock()
		in.parts[d] = true
		in.partsMu.Unlock()
	}
	return nil
}

// forgetPartitions drops days from the cache (after retention dropped them).
func (in *Ingester) forgetPartitions() {
	in.partsMu.Lock()
	clear(in.parts)
	in.partsMu.Unlock()
}
