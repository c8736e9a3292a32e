package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// LatencyBounds are the inclusive upper bounds, in milliseconds, of the
// latency histogram buckets of the rollups (their hist column); one more
// bucket counts everything above the last bound. Roughly 1-2-3-5 steps: a
// percentile read from them is off by at most the width of its bucket
// (interpolated linearly inside it), which is what a latency chart needs.
// Changing them needs a migration that rebuilds the rollups.
var LatencyBounds = [...]int32{1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
	1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 30000, 60000}

// HistBuckets is the length of a rollup's hist array.
const HistBuckets = len(LatencyBounds) + 1

// InsertEventsParams are the events of one ingest statement, column by
// column (row i of every slice is event i); no two share event id and
// time.
type InsertEventsParams struct {
	EventIDs       []string
	UsedAt         []time.Time
	TokenHashes    []string
	TokenIDs       []int64
	TeamIDs        []string
	RoutePaths     []*string
	ResponseStatus []*int32
	ResponseTimeMS []*int32
	IPAddresses    []*string
	UserAgents     []*string
	RequestMethods []*string
	ErrorMessages  []*string
}

// InsertedEvent is the key of an event InsertEvents stored.
type InsertedEvent struct {
	EventID string
	UsedAt  time.Time
}

// InsertEvents inserts the events and returns the keys of those that were
// new; the others were stored before. The same statement adds exactly the
// inserted rows to every rollup (data-modifying CTEs share one snapshot and
// commit together), so rollups count every stored event once; one
// statement is also one round trip, and in autocommit mode its completion
// is the commit.
func (*Queries) InsertEvents(ctx context.Context, db DBTX, p InsertEventsParams) ([]InsertedEvent, error) {
	rows, _ := db.Query(ctx, insertSQL, p.EventIDs, p.UsedAt, p.TokenHashes, p.TokenIDs, p.TeamIDs, p.RoutePaths,
		p.ResponseStatus, p.ResponseTimeMS, p.IPAddresses, p.UserAgents, p.RequestMethods, p.ErrorMessages)
	out := make([]InsertedEvent, 0, len(p.EventIDs))
	var e InsertedEvent
	_, err := pgx.ForEachRow(rows, []any{&e.EventID, &e.UsedAt}, func() error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	return out, nil
}

// RollupAllEvents adds every stored event to the rollups, with the ingest
// statement's own rollup SQL: for tests and benchmarks that load events in
// bulk, beside the ingest path.
func (*Queries) RollupAllEvents(ctx context.Context, db DBTX) error {
	_, err := db.Exec(ctx, "WITH "+rollupCTEs("usage.events")+" SELECT 1")
	return err
}

// insertSQL is the ingest statement; see InsertEvents.
var insertSQL = fmt.Sprintf(`
		WITH ins AS (
		    INSERT INTO usage.events (event_id, used_at, token_hash, token_id, team_id, route_path, response_status,
		                              response_time_ms, ip_address, user_agent, request_method, error_message)
		    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[], $5::text[], $6::text[],
		                         $7::integer[], $8::integer[], $9::text[], $10::text[], $11::text[], $12::text[])
		    ON CONFLICT (event_id, used_at) DO NOTHING
		    RETURNING event_id, used_at, token_hash, token_id, team_id, route_path, response_status, response_time_ms),
		%s
		SELECT event_id, used_at FROM ins`, rollupCTEs("ins"))

// rollupCTEs returns the CTEs that add the events of relation src (columns
// of usage.events) to every rollup table. Rollup rows are upserted in key
// order, so concurrent writers (several instances) lock them in the same
// order and cannot deadlock.
func rollupCTEs(src string) string {
	var bounds, hist []string
	for _, b := range LatencyBounds {
		bounds = append(bounds, strconv.Itoa(int(b)))
	}
	// Bucket i holds bounds[i-1] < ms <= bounds[i]: the number of bounds
	// below ms, i.e. width_bucket(ms - 1, bounds) for integers (bucketOf).
	for i := range HistBuckets {
		hist = append(hist, fmt.Sprintf("count(*) FILTER (WHERE wb = %d)", i))
	}
	aggsWith := func(hist string) string {
		return fmt.Sprintf(`count(*) AS calls, count(*) FILTER (WHERE response_status >= 400) AS errors,
		       coalesce(sum(response_time_ms), 0) AS lsum, count(response_time_ms) AS lcnt,
		       coalesce(max(response_time_ms), 0) AS lmax, %s AS hist,
		       min(used_at) AS fu, max(used_at) AS lu`, hist)
	}
	aggs := aggsWith("ARRAY[" + strings.Join(hist, ", ") + "]::bigint[]")
	merge := `
		    calls         = r.calls + EXCLUDED.calls,
		    errors        = r.errors + EXCLUDED.errors,
		    latency_sum   = r.latency_sum + EXCLUDED.latency_sum,
		    latency_count = r.latency_count + EXCLUDED.latency_count,
		    latency_max   = GREATEST(r.latency_max, EXCLUDED.latency_max),
		    hist          = ARRAY(SELECT x + y FROM unnest(r.hist, EXCLUDED.hist) AS t(x, y)),
		    first_used    = LEAST(r.first_used, EXCLUDED.first_used),
		    last_used     = GREATEST(r.last_used, EXCLUDED.last_used)`
	fine := func(table, col, expr string) string {
		return fmt.Sprintf(`
		INSERT INTO usage.%[1]s AS r (%[2]s, token_hash, route_path, status_class, token_id, team_id, calls, errors,
		                             latency_sum, latency_count, latency_max, hist, first_used, last_used)
		SELECT %[3]s, token_hash, rp, sc, max(token_id), max(team_id), %[4]s
		FROM e GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
		ON CONFLICT (%[2]s, token_hash, route_path, status_class) DO UPDATE SET %[5]s`, table, col, expr, aggs, merge)
	}
	var dims []string
	for _, k := range []struct{ kind, bucket string }{{"h", "hb"}, {"d", "db"}} {
		for _, d := range []struct{ dim, key, team string }{
			{"team", "team_id", "team_id"}, {"token", "token_id::text", "team_id"},
			{"route", "rp", "team_id"}, {"route_all", "rp", "''"},
		} {
			a := aggs
			if d.dim == "team" {
				a = aggsWith("'{}'::bigint[]") // team figures need no percentiles
			}
			dims = append(dims, fmt.Sprintf(`
		    SELECT '%s'::"char" AS kind, '%s' AS dim, %s AS key, %s AS bucket, %s AS team_id, sc, %s
		    FROM e GROUP BY 3, 4, 5, 6`, k.kind, d.dim, d.key, k.bucket, d.team, a))
		}
	}
	return fmt.Sprintf(`
		e AS (
		    SELECT *, width_bucket(response_time_ms - 1, '{%[1]s}'::integer[]) AS wb,
		           coalesce(route_path, '') AS rp, coalesce(response_status / 100, 0)::smallint AS sc,
		           date_trunc('hour', used_at, 'UTC') AS hb, date_trunc('day', used_at, 'UTC') AS db
		    FROM %[2]s),
		daily AS (%[3]s),
		dims AS (
		    INSERT INTO usage.rollup_dim AS r (kind, dim, key, bucket, team_id, status_class, calls, errors,
		                                   latency_sum, latency_count, latency_max, hist, first_used, last_used)
		    SELECT * FROM (%[4]s) u ORDER BY 1, 2, 3, 4, 5, 6
		    ON CONFLICT (kind, dim, key, bucket, team_id, status_class) DO UPDATE SET %[5]s)`,
		strings.Join(bounds, ","), src, fine("rollup_daily", "day", "db::date"),
		strings.Join(dims, "\n\t\t    UNION ALL"), merge)
}
