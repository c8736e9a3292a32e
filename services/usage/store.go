package usage

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
)

// storedEvent is an event with the token it belongs to, as stored.
type storedEvent struct {
	Event
	TokenID int64
	TeamID  string
}

// dedupKey identifies an event for deduplication: event_id and the
// timestamp (the unique key of usage.events, which must hold the partition
// key).
func dedupKey(eventID string, usedAt time.Time) string {
	return eventID + "\x00" + strconv.FormatInt(usedAt.UnixMicro(), 10)
}

// insertEvents inserts evs (no two with the same dedup key) and returns
// which were new; the others were stored before. The same statement adds
// exactly the inserted rows to every rollup (data-modifying CTEs share one
// snapshot and commit together), so rollups count every stored event
// once; one statement is also one round trip, and in autocommit mode its
// completion is the commit.
func insertEvents(ctx context.Context, q db.DBTX, evs []storedEvent) ([]bool, error) {
	n := len(evs)
	var (
		ids, hashes, teams                   = make([]string, n), make([]string, n), make([]string, n)
		usedAt                               = make([]time.Time, n)
		tokenIDs                             = make([]int64, n)
		routes, ips, agents, methods, errMsg = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		statuses, latencies                  = make([]*int32, n), make([]*int32, n)
	)
	for i, e := range evs {
		ids[i], hashes[i], teams[i], usedAt[i], tokenIDs[i] = e.EventID, e.TokenHash, e.TeamID, e.UsedAt, e.TokenID
		routes[i], ips[i], agents[i], methods[i], errMsg[i] = e.Route, e.IPAddress, e.UserAgent, e.RequestMethod, e.ErrorMessage
		statuses[i], latencies[i] = e.ResponseStatus, e.ResponseTimeMS
	}
	rows, _ := q.Query(ctx, insertSQL,
		ids, usedAt, hashes, tokenIDs, teams, routes, statuses, latencies, ips, agents, methods, errMsg)
	inserted := make(map[string]bool, n)
	var id string
	var at time.Time
	_, err := pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		inserted[dedupKey(id, at)] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	isNew := make([]bool, n)
	for i, e := range evs {
		isNew[i] = inserted[dedupKey(e.EventID, e.UsedAt)]
	}
	return isNew, nil
}

// insertSQL is the ingest statement; see insertEvents.
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
	for _, b := range latencyBounds {
		bounds = append(bounds, strconv.Itoa(int(b)))
	}
	// Bucket i holds bounds[i-1] < ms <= bounds[i]: the number of bounds
	// below ms, i.e. width_bucket(ms - 1, bounds) for integers (bucketOf).
	for i := range histBuckets {
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

// ---- partitions ----

const partitionPrefix = "events_p"

// partitionName is the partition of usage.events holding day (UTC).
func partitionName(day time.Time) string { return partitionPrefix + day.UTC().Format("20060102") }

// dayOf is the UTC day holding t.
func dayOf(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// partitionLockKey serialises partition DDL across instances.
const partitionLockKey = 0x75736167655f70 // "usage_p"

// ensurePartition creates the partition of day unless it exists.
func ensurePartition(ctx context.Context, b db.Beginner, day time.Time) error {
	day = dayOf(day)
	return db.InTx(ctx, b, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(partitionLockKey)); err != nil {
			return err
		}
		sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS usage.%s PARTITION OF usage.events FOR VALUES FROM ('%s') TO ('%s')`,
			partitionName(day), day.Format("2006-01-02 15:04:05+00"), day.AddDate(0, 0, 1).Format("2006-01-02 15:04:05+00"))
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create partition %s: %w", partitionName(day), err)
		}
		return nil
	})
}

// listPartitions returns the days that have a partition, oldest first.
func listPartitions(ctx context.Context, q db.DBTX) ([]time.Time, error) {
	rows, _ := q.Query(ctx, `
		SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'usage.events'::regclass`)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var days []time.Time
	for _, n := range names {
		d, err := time.Parse("20060102", strings.TrimPrefix(n, partitionPrefix))
		if err == nil && strings.HasPrefix(n, partitionPrefix) {
			days = append(days, d)
		}
	}
	slices.SortFunc(days, time.Time.Compare)
	return days, nil
}

// dropBefore drops the partitions of days before cutoff and the rollup
// rows before it, and returns the dropped partitions' names.
func dropBefore(ctx context.Context, b db.Beginner, q db.DBTX, cutoff time.Time) ([]string, error) {
	cutoff = dayOf(cutoff)
	days, err := listPartitions(ctx, q)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, d := range days {
		if !d.Before(cutoff) {
			break
		}
		name := partitionName(d)
		err := db.InTx(ctx, b, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(partitionLockKey)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "DROP TABLE IF EXISTS usage."+name)
			return err
		})
		if err != nil {
			return dropped, fmt.Errorf("drop partition %s: %w", name, err)
		}
		dropped = append(dropped, name)
	}
	if _, err := q.Exec(ctx, "DELETE FROM usage.rollup_daily WHERE day < $1::date", cutoff); err != nil {
		return dropped, fmt.Errorf("trim rollup_daily: %w", err)
	}
	if _, err := q.Exec(ctx, "DELETE FROM usage.rollup_dim WHERE bucket < $1", cutoff); err != nil {
		return dropped, fmt.Errorf("trim rollup_dim: %w", err)
	}
	return dropped, nil
}
