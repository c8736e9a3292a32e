package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

func signed(secret string, body []byte, at time.Time) (sig, ts string) {
	ts = strconv.FormatInt(at.Unix(), 10)
	return Sign([]byte(secret), ts, body), ts
}

func event(hash string, at time.Time, extra map[string]any) map[string]any {
	e := map[string]any{
		"token_hash": hash, "route": "/api/openai", "timestamp": at.UnixMilli(), "response_status": 200,
		"response_time_ms": 412, "ip_address": "203.0.113.7", "user_agent": "n8n", "request_method": "POST", "error_message": nil,
	}
	for k, v := range extra {
		if v == "<delete>" {
			delete(e, k)
		} else {
			e[k] = v
		}
	}
	return e
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *harness) post(t testing.TB, body []byte) (int, int, error) {
	t.Helper()
	sig, ts := signed(testSecret, body, time.Now())
	return h.svc.Ingest(context.Background(), body, sig, ts)
}

func (h *harness) count(t testing.TB) int64 {
	t.Helper()
	var n int64
	if err := h.pool.QueryRow(context.Background(), "SELECT count(*) FROM usage.events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkRollups asserts that both rollups agree with the raw events, group by group.
func checkRollups(t testing.TB, q db.DBTX) {
	t.Helper()
	for _, c := range []struct{ table, bucket string }{
		{"rollup_daily", "(used_at AT TIME ZONE 'UTC')::date"},
	} {
		col := "day"
		var diff int64
		err := q.QueryRow(context.Background(), fmt.Sprintf(`
			WITH raw AS (
			    SELECT %[2]s AS b, token_hash, coalesce(route_path, '') AS rp,
			           coalesce(response_status / 100, 0)::smallint AS sc,
			           count(*) AS calls, count(*) FILTER (WHERE response_status >= 400) AS errors,
			           coalesce(sum(response_time_ms), 0) AS lsum, count(response_time_ms) AS lcnt,
			           min(used_at) AS fu, max(used_at) AS lu
			    FROM usage.events GROUP BY 1, 2, 3, 4),
			ru AS (
			    SELECT %[3]s AS b, token_hash, route_path AS rp, status_class AS sc, calls, errors,
			           latency_sum AS lsum, latency_count AS lcnt, first_used AS fu, last_used AS lu,
			           (SELECT sum(x) FROM unnest(hist) x) AS hsum
			    FROM usage.%[1]s)
			SELECT count(*) FROM raw FULL JOIN ru USING (b, token_hash, rp, sc)
			WHERE raw.calls IS DISTINCT FROM ru.calls OR raw.errors IS DISTINCT FROM ru.errors
			   OR raw.lsum IS DISTINCT FROM ru.lsum OR raw.lcnt IS DISTINCT FROM ru.lcnt
			   OR raw.fu IS DISTINCT FROM ru.fu OR raw.lu IS DISTINCT FROM ru.lu OR ru.hsum IS DISTINCT FROM raw.lcnt`,
			c.table, c.bucket, col)).Scan(&diff)
		if err != nil {
			t.Fatalf("%s: %v", c.table, err)
		}
		if diff != 0 {
			t.Errorf("%s disagrees with raw events in %d groups", c.table, diff)
		}
	}
}

// checkDims asserts that every dimension of rollup_dim agrees with the raw events.
func checkDims(t testing.TB, q db.DBTX) {
	t.Helper()
	for _, k := range []struct{ kind, bucket string }{{"h", "date_trunc('hour', used_at, 'UTC')"}, {"d", "date_trunc('day', used_at, 'UTC')"}} {
		for _, d := range []struct{ dim, key, team string }{
			{"team", "team_id", "team_id"}, {"token", "token_id::text", "team_id"},
			{"route", "coalesce(route_path, '')", "team_id"}, {"route_all", "coalesce(route_path, '')", "''"},
		} {
			var diff int64
			err := q.QueryRow(context.Background(), fmt.Sprintf(`
				WITH raw AS (
				    SELECT %[1]s AS bucket, %[2]s AS key, %[3]s AS team_id, coalesce(response_status / 100, 0)::smallint AS sc,
				           count(*) AS calls, count(*) FILTER (WHERE response_status >= 400) AS errors,
				           coalesce(sum(response_time_ms), 0) AS lsum, count(response_time_ms) AS lcnt
				    FROM usage.events GROUP BY 1, 2, 3, 4),
				ru AS (
				    SELECT bucket, key, team_id, status_class AS sc, calls, errors, latency_sum AS lsum, latency_count AS lcnt,
				           (SELECT sum(x) FROM unnest(hist) x) AS hsum
				    FROM usage.rollup_dim WHERE kind = $1 AND dim = $2)
				SELECT count(*) FROM raw FULL JOIN ru USING (bucket, key, team_id, sc)
				WHERE raw.calls IS DISTINCT FROM ru.calls OR raw.errors IS DISTINCT FROM ru.errors
				   OR raw.lsum IS DISTINCT FROM ru.lsum OR raw.lcnt IS DISTINCT FROM ru.lcnt
				   OR ($2 <> 'team' AND ru.hsum IS DISTINCT FROM raw.lcnt)`,
				k.bucket, d.key, d.team), k.kind, d.dim).Scan(&diff)
			if err != nil {
				t.Fatalf("%s/%s: %v", k.kind, d.dim, err)
			}
			if diff != 0 {
				t.Errorf("rollup_dim %s/%s disagrees with raw events in %d groups", k.kind, d.dim, diff)
			}
		}
	}
}

// TestHistogramBuckets checks that the SQL bucketing of the ingest
// statement matches bucketOf, boundary by boundary.
func TestHistogramBuckets(t *testing.T) {
	h := newHarness(t)
	hash := h.token.add(1, "known", "core-team")
	now := time.Now()
	want := make([]int64, histBuckets)
	var evs []any
	for i, ms := range []int{0, 1, 2, 3, 4, 5, 6, 99, 100, 101, 999, 1000, 1001, 59999, 60000, 60001, 86400000} {
		want[bucketOf(int32(ms))]++
		evs = append(evs, event(hash, now, map[string]any{"event_id": fmt.Sprint("h", i), "response_time_ms": ms}))
	}
	if _, _, err := h.post(t, mustJSON(t, map[string]any{"events": evs})); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"rollup_daily", "rollup_dim WHERE dim = 'token' AND kind = 'h'", "rollup_dim WHERE dim = 'route_all' AND kind = 'd'"} {
		var got []int64
		if err := h.pool.QueryRow(context.Background(), "SELECT hist FROM usage."+table).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s hist %v, want %v", table, got, want)
		}
	}
}

func wantCode(t *testing.T, err error, kind *errs.Kind, substr string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v, want kind %s", err, kind)
	}
	if substr != "" && !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not mention %q", err, substr)
	}
}

func TestIngest(t *testing.T) {
	h := newHarness(t)
	hash := h.token.add(42, "n8n-image-workflow", "core-team")
	now := time.Now()

	t.Run("single event", func(t *testing.T) {
		acc, dup, err := h.post(t, mustJSON(t, event(hash, now, nil)))
		if err != nil || acc != 1 || dup != 0 {
			t.Fatalf("got %d/%d, %v", acc, dup, err)
		}
		var tokenID int64
		var team, route string
		var usedAt time.Time
		err = h.pool.QueryRow(context.Background(), "SELECT token_id, team_id, route_path, used_at FROM usage.events").Scan(&tokenID, &team, &route, &usedAt)
		if err != nil || tokenID != 42 || team != "core-team" || route != "/api/openai" || !usedAt.Equal(time.UnixMilli(now.UnixMilli())) {
			t.Fatalf("stored %d %q %q %v, %v", tokenID, team, route, usedAt, err)
		}
	})
	t.Run("the same event again is a duplicate", func(t *testing.T) {
		acc, dup, err := h.post(t, mustJSON(t, event(hash, now, nil)))
		if err != nil || acc != 0 || dup != 1 {
			t.Fatalf("got %d/%d, %v", acc, dup, err)
		}
		if n := h.count(t); n != 1 {
			t.Fatalf("%d rows", n)
		}
	})
	t.Run("batch with event ids, duplicates inside and across", func(t *testing.T) {
		var evs []any
		for i := range 50 {
			evs = append(evs, event(hash, now.Add(-time.Duration(i)*time.Minute), map[string]any{
				"event_id": fmt.Sprintf("ev-%d", i), "response_status": 200 + (i%4)*100, "response_time_ms": i * 37,
			}))
		}
		evs = append(evs, evs[3]) // a duplicate inside the batch
		acc, dup, err := h.post(t, mustJSON(t, map[string]any{"events": evs}))
		if err != nil || acc != 50 || dup != 1 {
			t.Fatalf("got %d/%d, %v", acc, dup, err)
		}
		acc, dup, err = h.post(t, mustJSON(t, map[string]any{"events": evs[:10]}))
		if err != nil || acc != 0 || dup != 10 {
			t.Fatalf("retry: got %d/%d, %v", acc, dup, err)
		}
		if n := h.count(t); n != 51 {
			t.Fatalf("%d rows", n)
		}
		checkRollups(t, h.pool)
		checkDims(t, h.pool)
	})
	t.Run("concurrent posts share commits and all land", func(t *testing.T) {
		before := h.count(t)
		var wg sync.WaitGroup
		errc := make(chan error, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := mustJSON(t, event(hash, now, map[string]any{"event_id": fmt.Sprintf("conc-%d", i)}))
				if acc, _, err := h.post(t, body); err != nil || acc != 1 {
					errc <- fmt.Errorf("post %d: %d, %v", i, acc, err)
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		if n := h.count(t); n != before+40 {
			t.Fatalf("%d rows, want %d", n, before+40)
		}
		checkRollups(t, h.pool)
	})
	t.Run("last_used reaches the token service in batches", func(t *testing.T) {
		h.lu.flush(context.Background())
		h.token.mu.Lock()
		defer h.token.mu.Unlock()
		if got := h.token.uses[hash]; !got.Equal(time.UnixMilli(now.UnixMilli())) {
			t.Errorf("last_used %v, want %v", got, now)
		}
		if h.token.useCalls != 1 {
			t.Errorf("%d RecordTokenUse calls for ~90 events, want 1", h.token.useCalls)
		}
	})
}

func TestIngestRejects(t *testing.T) {
	h := newHarness(t)
	hash := h.token.add(1, "known", "core-team")
	now := time.Now()
	good := mustJSON(t, event(hash, now, nil))
	ts := strconv.FormatInt(now.Unix(), 10)
	batchWith := func(bad map[string]any) []byte {
		return mustJSON(t, map[string]any{"events": []any{event(hash, now, map[string]any{"event_id": "ok-1"}), bad}})
	}
	cases := []struct {
		name     string
		body     []byte
		sig, ts  string
		kind     *errs.Kind
		contains string
	}{
		{"no signature", good, "", "", errs.ErrUnauthenticated, "Missing"},
		{"signature without timestamp", good, Sign([]byte(testSecret), ts, good), "", errs.ErrUnauthenticated, "Missing"},
		{"bad signature", good, Sign([]byte("another-secret-0123456789abcdefghij"), ts, good), ts, errs.ErrUnauthenticated, "Invalid request signature"},
		{"signature of another body", good, Sign([]byte(testSecret), ts, []byte("{}")), ts, errs.ErrUnauthenticated, "Invalid request signature"},
		{"malformed signature", good, "v1=zz", ts, errs.ErrUnauthenticated, "Invalid request signature"},
		{"unversioned signature", good, strings.TrimPrefix(Sign([]byte(testSecret), ts, good), "v1="), ts, errs.ErrUnauthenticated, "Invalid request signature"},
		{"stale timestamp", good, Sign([]byte(testSecret), strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10), good), strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10), errs.ErrUnauthenticated, "clock skew"},
		{"future timestamp", good, Sign([]byte(testSecret), strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10), good), strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10), errs.ErrUnauthenticated, "clock skew"},
		{"timestamp not a number", good, Sign([]byte(testSecret), "soon", good), "soon", errs.ErrUnauthenticated, "timestamp"},
		{"unknown token hash", mustJSON(t, event(hashOf("nope"), now, nil)), "", "", errs.ErrInvalidArgument, "token_hash: unknown token"},
		{"unknown hash in a batch", batchWith(event(hashOf("nope"), now, nil)), "", "", errs.ErrInvalidArgument, "events[1].token_hash: unknown token"},
		{"not JSON", []byte("token_hash=x"), "", "", errs.ErrInvalidArgument, "Malformed JSON"},
		{"array", []byte(`[{"token_hash":"x"}]`), "", "", errs.ErrInvalidArgument, "Malformed JSON"},
		{"trailing data", append(append([]byte{}, good...), []byte(" {}")...), "", "", errs.ErrInvalidArgument, "after the JSON"},
		{"unknown field", mustJSON(t, event(hash, now, map[string]any{"extra": 1})), "", "", errs.ErrInvalidArgument, "unknown field"},
		{"missing hash", mustJSON(t, event(hash, now, map[string]any{"token_hash": "<delete>"})), "", "", errs.ErrInvalidArgument, "token_hash: required"},
		{"hash not hex", mustJSON(t, event(strings.ToUpper(hash), now, nil)), "", "", errs.ErrInvalidArgument, "token_hash: must be"},
		{"missing timestamp", mustJSON(t, event(hash, now, map[string]any{"timestamp": "<delete>"})), "", "", errs.ErrInvalidArgument, "timestamp: required"},
		{"timestamp as string", mustJSON(t, event(hash, now, map[string]any{"timestamp": "yesterday"})), "", "", errs.ErrInvalidArgument, "timestamp"},
		{"timestamp fractional", mustJSON(t, event(hash, now, map[string]any{"timestamp": 1.5})), "", "", errs.ErrInvalidArgument, "timestamp: must be an integer"},
		{"timestamp in the future", mustJSON(t, event(hash, now.Add(time.Hour), nil)), "", "", errs.ErrInvalidArgument, "future"},
		{"timestamp beyond retention", mustJSON(t, event(hash, now.AddDate(0, 0, -91), nil)), "", "", errs.ErrInvalidArgument, "retention"},
		{"status out of range", mustJSON(t, event(hash, now, map[string]any{"response_status": 700})), "", "", errs.ErrInvalidArgument, "response_status"},
		{"status wrong type", mustJSON(t, event(hash, now, map[string]any{"response_status": "200"})), "", "", errs.ErrInvalidArgument, "response_status"},
		{"negative latency", mustJSON(t, event(hash, now, map[string]any{"response_time_ms": -1})), "", "", errs.ErrInvalidArgument, "response_time_ms"},
		{"method too long", mustJSON(t, event(hash, now, map[string]any{"request_method": "PROPFINDXXXX"})), "", "", errs.ErrInvalidArgument, "request_method"},
		{"ip too long", mustJSON(t, event(hash, now, map[string]any{"ip_address": strings.Repeat("1", 46)})), "", "", errs.ErrInvalidArgument, "ip_address"},
		{"NUL in agent", mustJSON(t, event(hash, now, map[string]any{"user_agent": "a\x00b"})), "", "", errs.ErrInvalidArgument, "user_agent"},
		{"empty event id", mustJSON(t, event(hash, now, map[string]any{"event_id": ""})), "", "", errs.ErrInvalidArgument, "event_id"},
		{"empty batch", []byte(`{"events": []}`), "", "", errs.ErrInvalidArgument, "empty batch"},
		{"batch with event fields", mustJSON(t, map[string]any{"events": []any{event(hash, now, nil)}, "token_hash": hash}), "", "", errs.ErrInvalidArgument, "only the key"},
		{"null in batch", []byte(`{"events": [null]}`), "", "", errs.ErrInvalidArgument, "events[0]"},
		{"one bad event spoils the batch", batchWith(event(hash, now, map[string]any{"response_status": 99})), "", "", errs.ErrInvalidArgument, "events[1].response_status"},
		{"batch too large", func() []byte {
			evs := make([]any, MaxBatchEvents+1)
			for i := range evs {
				evs[i] = event(hash, now, map[string]any{"event_id": strconv.Itoa(i)})
			}
			return mustJSON(t, map[string]any{"events": evs})
		}(), "", "", errs.ErrInvalidArgument, "at most 1000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sig, sts := c.sig, c.ts
			if sig == "" && sts == "" && c.kind != errs.ErrUnauthenticated {
				sig, sts = signed(testSecret, c.body, time.Now())
			}
			_, _, err := h.svc.Ingest(context.Background(), c.body, sig, sts)
			wantCode(t, err, c.kind, c.contains)
			if strings.Contains(err.Error(), testSecret) {
				t.Fatal("error echoes the secret")
			}
		})
	}
	if n := h.count(t); n != 0 {
		t.Fatalf("%d rows stored by rejected posts", n)
	}
	var r int64
	_ = h.pool.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM usage.rollup_dim) + (SELECT count(*) FROM usage.rollup_daily)").Scan(&r)
	if r != 0 {
		t.Fatalf("%d rollup rows from rejected posts", r)
	}
}

func TestIngestSecretsAndUnsigned(t *testing.T) {
	now := time.Now()
	t.Run("previous secret accepted during rotation", func(t *testing.T) {
		h := newHarness(t)
		hash := h.token.add(1, "known", "core-team")
		body := mustJSON(t, event(hash, now, nil))
		sig, ts := signed(testPrevSecret, body, now)
		if acc, _, err := h.svc.Ingest(context.Background(), body, sig, ts); err != nil || acc != 1 {
			t.Fatalf("%d, %v", acc, err)
		}
		// Both signatures at once (a Worker mid-rotation) also pass.
		body2 := mustJSON(t, event(hash, now.Add(-time.Second), nil))
		s1, ts2 := signed(testSecret, body2, now)
		s2, _ := signed(testPrevSecret, body2, now)
		if acc, _, err := h.svc.Ingest(context.Background(), body2, s2+","+s1, ts2); err != nil || acc != 1 {
			t.Fatalf("%d, %v", acc, err)
		}
	})
	t.Run("unsigned refused unless allowed", func(t *testing.T) {
		h := newHarness(t)
		hash := h.token.add(1, "known", "core-team")
		_, _, err := h.svc.Ingest(context.Background(), mustJSON(t, event(hash, now, nil)), "", "")
		wantCode(t, err, errs.ErrUnauthenticated, "Missing")
		if h.count(t) != 0 {
			t.Fatal("stored")
		}
	})
	t.Run("unsigned allowed for existing tokens only", func(t *testing.T) {
		h := newHarness(t, allowUnsigned)
		hash := h.token.add(1, "known", "core-team")
		if acc, _, err := h.svc.Ingest(context.Background(), mustJSON(t, event(hash, now, nil)), "", ""); err != nil || acc != 1 {
			t.Fatalf("%d, %v", acc, err)
		}
		_, _, err := h.svc.Ingest(context.Background(), mustJSON(t, event(hashOf("fake"), now, nil)), "", "")
		wantCode(t, err, errs.ErrInvalidArgument, "unknown token")
		// A wrong signature is refused even when unsigned posts are allowed.
		body := mustJSON(t, event(hash, now.Add(-time.Second), nil))
		_, _, err = h.svc.Ingest(context.Background(), body, "v1="+strings.Repeat("0", 64), strconv.FormatInt(now.Unix(), 10))
		wantCode(t, err, errs.ErrUnauthenticated, "Invalid request signature")
		if n := h.count(t); n != 1 {
			t.Fatalf("%d rows", n)
		}
	})
	t.Run("token service down: 503, nothing stored", func(t *testing.T) {
		h := newHarness(t)
		h.token.down = true
		_, _, err := h.post(t, mustJSON(t, event(hashOf("whatever"), now, nil)))
		wantCode(t, err, errs.ErrUnavailable, "Token service unavailable")
		if h.count(t) != 0 {
			t.Fatal("stored")
		}
	})
}

func TestPartitions(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	now := time.Date(2025, 11, 8, 7, 0, 0, 0, time.UTC)
	m := &maintainer{pool: h.pool, log: testLog(), retention: 3 * 24 * time.Hour, ahead: 2, ingester: h.ing, now: func() time.Time { return now }}
	// Old days, as if the service had run before.
	for _, d := range []int{-5, -4, -3, -1} {
		if err := ensurePartition(ctx, h.pool, now.AddDate(0, 0, d)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.pool.Exec(ctx, `INSERT INTO usage.rollup_daily (day, token_hash, route_path, status_class, token_id, team_id,
		calls, errors, latency_sum, latency_count, latency_max, hist, first_used, last_used)
		VALUES ('2025-11-03', 'h', '', 2, 1, 't', 1, 0, 0, 0, 0, '{}', now(), now()),
		       ('2025-11-05', 'h', '', 2, 1, 't', 1, 0, 0, 0, 0, '{}', now(), now())`)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.once(ctx); err != nil {
		t.Fatal(err)
	}
	days, err := queries.PartitionDays(ctx, h.pool)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range days {
		got = append(got, d.Format("01-02"))
	}
	// Retention 3 days from 11-08 07:00: cutoff is 11-05 07:00, so day 11-05
	// stays (it still holds events inside the window); 11-03 and 11-04 go.
	if want := "11-05 11-07 11-08 11-09 11-10"; strings.Join(got, " ") != want {
		t.Fatalf("partitions %v, want %s", got, want)
	}
	var rollups int64
	_ = h.pool.QueryRow(ctx, "SELECT count(*) FROM usage.rollup_daily").Scan(&rollups)
	if rollups != 1 {
		t.Fatalf("%d daily rollup rows left, want 1", rollups)
	}
	// Idempotent.
	if err := m.once(ctx); err != nil {
		t.Fatal(err)
	}
	// A late event for a day without a partition gets one on demand.
	hash := h.token.add(1, "known", "core-team")
	late := time.Now().AddDate(0, 0, -20)
	if acc, _, err := h.post(t, mustJSON(t, event(hash, late, nil))); err != nil || acc != 1 {
		t.Fatalf("%d, %v", acc, err)
	}
	var part string
	_ = h.pool.QueryRow(ctx, "SELECT tableoid::regclass::text FROM usage.events").Scan(&part)
	if part != "usage."+store.PartitionName(late) {
		t.Fatalf("stored in %s", part)
	}
}

func TestGracefulCloseFlushes(t *testing.T) {
	h := newHarness(t)
	hash := h.token.add(1, "known", "core-team")
	var wg sync.WaitGroup
	var acked sync.Map
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if acc, _, err := h.post(t, mustJSON(t, event(hash, time.Now(), map[string]any{"event_id": fmt.Sprint("g", i)}))); err == nil && acc == 1 {
				acked.Store(i, true)
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	h.ing.Close()
	wg.Wait()
	var n int
	acked.Range(func(any, any) bool { n++; return true })
	if got := h.count(t); got != int64(n) {
		t.Fatalf("%d acknowledged, %d stored", n, got)
	}
	_, _, err := h.post(t, mustJSON(t, event(hash, time.Now(), nil)))
	wantCode(t, err, errs.ErrUnavailable, "shutting down")
}
