package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Dimension is what a row of usage.rollup_dim sums calls by. The
// dashboards read one dimension at a time, so each query touches a few
// thousand rows whatever the traffic.
type Dimension string

const (
	// DimTeam rows are keyed by team id.
	DimTeam Dimension = "team"
	// DimToken rows are keyed by token id (as text).
	DimToken Dimension = "token"
	// DimRoute rows are keyed by route path ('' for none), per team.
	DimRoute Dimension = "route"
	// DimRouteAll rows are keyed by route path over every team (team_id
	// ''): only for callers who see everything.
	DimRouteAll Dimension = "route_all"
)

// RollupFilter selects the rows of one dimension in scope.
type RollupFilter struct {
	Dim   Dimension
	Scope Scope
	// Since is the first bucket read; zero reads all time.
	Since time.Time
	// Keys limits the rows to these keys; nil reads every key.
	Keys []string
}

func (f RollupFilter) args() []any { return append(f.Scope.args(), string(f.Dim), f.Since, f.Keys) }

// DimRow is one daily rollup_dim row.
type DimRow struct {
	Key, TeamID              string
	StatusClass              int16
	Calls, Errors            int64
	LatencySum, LatencyCount int64
	LatencyMax               int32
	Hist                     []int64
	FirstUsed, LastUsed      time.Time
}

// DailyRows returns the daily rows of f, ordered by key.
func (*Queries) DailyRows(ctx context.Context, db DBTX, f RollupFilter) ([]DimRow, error) {
	rows, _ := db.Query(ctx, `
		SELECT key, team_id, status_class, calls, errors, latency_sum, latency_count, latency_max, hist, first_used, last_used
		FROM usage.rollup_dim
		WHERE kind = 'd' AND dim = $3 AND bucket >= $4 AND ($5::text[] IS NULL OR key = ANY($5)) AND `+scopeSQL+`
		ORDER BY key`, f.args()...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DimRow, error) {
		var r DimRow
		err := row.Scan(&r.Key, &r.TeamID, &r.StatusClass, &r.Calls, &r.Errors, &r.LatencySum, &r.LatencyCount,
			&r.LatencyMax, &r.Hist, &r.FirstUsed, &r.LastUsed)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("usage rollups by %s: %w", f.Dim, err)
	}
	return out, nil
}

// TopKeys returns the keys of f's dimension (f.Keys is ignored) with the
// most calls since f.Since, most first, at most limit; skipEmpty leaves out
// the ” key (events without a route).
func (*Queries) TopKeys(ctx context.Context, db DBTX, f RollupFilter, limit int, skipEmpty bool) ([]string, error) {
	rows, _ := db.Query(ctx, `
		SELECT key FROM usage.rollup_dim
		WHERE kind = 'd' AND dim = $3 AND bucket >= $4 AND (NOT $6 OR key <> '') AND `+scopeSQL+`
		GROUP BY key ORDER BY sum(calls) DESC, key LIMIT $5`,
		append(f.Scope.args(), string(f.Dim), f.Since, limit, skipEmpty)...)
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("usage top %s: %w", f.Dim, err)
	}
	return keys, nil
}

// HourlyCallsRow is the calls of one key in one hour.
type HourlyCallsRow struct {
	Key    string
	Bucket time.Time
	Calls  int64
}

// HourlyCalls returns the calls per key and hour of f (f.Keys must not be
// nil: no row matches then), in no order.
func (*Queries) HourlyCalls(ctx context.Context, db DBTX, f RollupFilter) ([]HourlyCallsRow, error) {
	rows, _ := db.Query(ctx, `
		SELECT key, bucket, sum(calls)::bigint FROM usage.rollup_dim
		WHERE kind = 'h' AND dim = $3 AND bucket >= $4 AND key = ANY($5) AND `+scopeSQL+`
		GROUP BY 1, 2`, f.args()...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (HourlyCallsRow, error) {
		var r HourlyCallsRow
		err := row.Scan(&r.Key, &r.Bucket, &r.Calls)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("usage hourly calls: %w", err)
	}
	return out, nil
}
