package usage

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
)

// scope is what a caller may read: every team, or the listed ones.
type scope struct {
	all   bool
	teams []string
}

// scopeSQL is the rollup/event filter of a scope, on parameters $1 and $2.
const scopeSQL = "($1::boolean OR team_id = ANY($2::text[]))"

func (s scope) args() []any {
	teams := s.teams
	if teams == nil {
		teams = []string{}
	}
	return []any{s.all, teams}
}

// agg is summed rollup figures.
type agg struct {
	calls, errors          int64
	latencySum, latencyCnt int64
	latencyMax             int32
	hist                   []int64
	firstUsed, lastUsed    time.Time
	byClass                map[int16]int64
	team                   string
}

func (a *agg) avgLatency() float64 {
	if a.latencyCnt == 0 {
		return 0
	}
	return math.Round(float64(a.latencySum)/float64(a.latencyCnt)*100) / 100
}

// successRate is the share of calls below 400, in percent (0 without calls).
func (a *agg) successRate() float64 {
	if a.calls == 0 {
		return 0
	}
	return math.Round(float64(a.calls-a.errors)/float64(a.calls)*10000) / 100
}

func (a *agg) add(class int16, calls, errors, lsum, lcnt int64, lmax int32, hist []int64, first, last time.Time) {
	a.calls += calls
	a.errors += errors
	a.latencySum += lsum
	a.latencyCnt += lcnt
	a.latencyMax = max(a.latencyMax, lmax)
	if hist != nil {
		a.hist = addHist(a.hist, hist)
	}
	if a.firstUsed.IsZero() || first.Before(a.firstUsed) {
		a.firstUsed = first
	}
	if last.After(a.lastUsed) {
		a.lastUsed = last
	}
	if a.byClass == nil {
		a.byClass = map[int16]int64{}
	}
	a.byClass[class] += calls
}

// classNames spells status classes as the API shows them.
func className(c int16) string {
	if c >= 1 && c <= 5 {
		return fmt.Sprintf("%dxx", c)
	}
	return "unknown"
}

func (a *agg) classes() map[string]int64 {
	out := map[string]int64{}
	for c, n := range a.byClass {
		out[className(c)] += n
	}
	return out
}

// The dashboards read usage.rollup_dim (one dimension at a time), so each
// query touches a few thousand rows whatever the traffic. Dimensions:
// "team" (key = team id), "token" (key = token id), "route" (key = route
// path, per team) and "route_all" (key = route path, every team: only for
// callers who see everything).

// routeDim is the route dimension a scope reads.
func routeDim(s scope) string {
	if s.all {
		return "route_all"
	}
	return "route"
}

// totals sums the daily team rollups in scope (all time: as long as
// retention keeps them).
func totals(ctx context.Context, q db.DBTX, s scope) (agg, error) {
	var a agg
	err := q.QueryRow(ctx, `
		SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(errors), 0)::bigint,
		       coalesce(sum(latency_sum), 0)::bigint, coalesce(sum(latency_count), 0)::bigint
		FROM usage.rollup_dim WHERE kind = 'd' AND dim = 'team' AND `+scopeSQL, s.args()...).Scan(&a.calls, &a.errors, &a.latencySum, &a.latencyCnt)
	if err != nil {
		return a, fmt.Errorf("usage totals: %w", err)
	}
	return a, nil
}

type hourPoint struct {
	hour time.Time
	agg
}

// hourly returns per-hour figures since since, newest first; empty hours absent.
func hourly(ctx context.Context, q db.DBTX, s scope, since time.Time) ([]hourPoint, error) {
	rows, _ := q.Query(ctx, `
		SELECT bucket, sum(calls)::bigint, sum(errors)::bigint, sum(latency_sum)::bigint, sum(latency_count)::bigint
		FROM usage.rollup_dim WHERE kind = 'h' AND dim = 'team' AND bucket >= $3 AND `+scopeSQL+`
		GROUP BY bucket ORDER BY bucket DESC`, append(s.args(), since)...)
	var out []hourPoint
	var p hourPoint
	_, err := pgx.ForEachRow(rows, []any{&p.hour, &p.calls, &p.errors, &p.latencySum, &p.latencyCnt}, func() error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage hourly: %w", err)
	}
	return out, nil
}

// dimAggs sums the daily rollups of dim in scope since since (zero: all
// time), for keys (nil: every key), per key, with merged histograms and
// counts per status class. order lists the keys as first seen.
func dimAggs(ctx context.Context, q db.DBTX, dim string, s scope, since time.Time, keys []string) (map[string]*agg, []string, error) {
	rows, _ := q.Query(ctx, `
		SELECT key, team_id, status_class, calls, errors, latency_sum, latency_count, latency_max, hist, first_used, last_used
		FROM usage.rollup_dim
		WHERE kind = 'd' AND dim = $3 AND bucket >= $4 AND ($5::text[] IS NULL OR key = ANY($5)) AND `+scopeSQL+`
		ORDER BY key`, append(s.args(), dim, since, keys)...)
	out := map[string]*agg{}
	var order []string
	var (
		k, team                 string
		class                   int16
		calls, errs, lsum, lcnt int64
		lmax                    int32
		hist                    []int64
		first, last             time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&k, &team, &class, &calls, &errs, &lsum, &lcnt, &lmax, &hist, &first, &last}, func() error {
		a := out[k]
		if a == nil {
			a = &agg{team: team}
			out[k] = a
			order = append(order, k)
		}
		a.add(class, calls, errs, lsum, lcnt, lmax, hist, first, last)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("usage rollups by %s: %w", dim, err)
	}
	return out, order, nil
}

// topKeys returns the keys of dim with the most calls since since in
// scope, most first, at most limit; skipEmpty leaves out the ” key
// (events without a route).
func topKeys(ctx context.Context, q db.DBTX, dim string, s scope, since time.Time, limit int, skipEmpty bool) ([]string, error) {
	rows, _ := q.Query(ctx, `
		SELECT key FROM usage.rollup_dim
		WHERE kind = 'd' AND dim = $3 AND bucket >= $4 AND (NOT $6 OR key <> '') AND `+scopeSQL+`
		GROUP BY key ORDER BY sum(calls) DESC, key LIMIT $5`,
		append(s.args(), dim, since, limit, skipEmpty)...)
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("usage top %s: %w", dim, err)
	}
	return keys, nil
}

// hourlyCalls returns calls per key of dim and hour since since (for anomalies).
func hourlyCalls(ctx context.Context, q db.DBTX, dim string, s scope, since time.Time, keys []string) (map[string]map[time.Time]int64, error) {
	rows, _ := q.Query(ctx, `
		SELECT key, bucket, sum(calls)::bigint FROM usage.rollup_dim
		WHERE kind = 'h' AND dim = $3 AND bucket >= $4 AND key = ANY($5) AND `+scopeSQL+`
		GROUP BY 1, 2`, append(s.args(), dim, since, keys)...)
	out := map[string]map[time.Time]int64{}
	var k string
	var h time.Time
	var n int64
	_, err := pgx.ForEachRow(rows, []any{&k, &h, &n}, func() error {
		if out[k] == nil {
			out[k] = map[time.Time]int64{}
		}
		out[k][h.UTC()] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage hourly calls: %w", err)
	}
	return out, nil
}

// distribution counts calls per value of column col of rollup_daily for
// rows matching cond ($3) in scope, most first (all time).
func distribution(ctx context.Context, q db.DBTX, col, cond string, s scope, arg any, limit int) ([]keyCount, error) {
	rows, _ := q.Query(ctx, fmt.Sprintf(`
		SELECT (%[1]s)::text, sum(calls)::bigint FROM usage.rollup_daily
		WHERE %[2]s AND %[3]s GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $4`, col, cond, scopeSQL),
		append(s.args(), arg, limit)...)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (keyCount, error) {
		var kc keyCount
		err := r.Scan(&kc.key, &kc.count)
		return kc, err
	})
	if err != nil {
		return nil, fmt.Errorf("usage distribution by %s: %w", col, err)
	}
	return out, nil
}

type keyCount struct {
	key   string
	count int64
}

// anomalous reports whether the calls of the last hour exceed the hourly
// mean of the 7 days before by more than 3 standard deviations. "The last
// hour" is the busier of the previous full hour and the current partial
// one (so a spike shows at once); the baseline is the 168 full hours before
// the previous one, empty hours counting as 0. Without any call in the
// baseline there is nothing to compare with: not anomalous.
func anomalous(perHour map[time.Time]int64, now time.Time) bool {
	cur := now.UTC().Truncate(time.Hour)
	prev := cur.Add(-time.Hour)
	last := max(perHour[cur], perHour[prev])
	const n = 7 * 24
	var sum, sumSq float64
	for i := 1; i <= n; i++ {
		v := float64(perHour[prev.Add(-time.Duration(i)*time.Hour)])
		sum += v
		sumSq += v * v
	}
	if sum == 0 {
		return false
	}
	mean := sum / n
	sd := math.Sqrt(math.Max(sumSq/n-mean*mean, 0))
	return float64(last) > mean+3*sd
}

// anomalyWindow is how far back hourlyCalls must read for anomalous.
const anomalyWindow = (7*24 + 2) * time.Hour

// logRow is one raw event as the lists show it.
type logRow struct {
	id                            int64
	eventID                       string
	tokenHash                     string
	tokenID                       int64
	teamID                        string
	route                         *string
	usedAt                        time.Time
	status, latency               *int32
	ip, agent, method, errMessage *string
}

const logColumns = `id, event_id, token_hash, token_id, team_id, route_path, used_at, response_status,
	response_time_ms, ip_address, user_agent, request_method, error_message`

func scanLogs(rows pgx.Rows) ([]logRow, error) {
	var out []logRow
	var r logRow
	_, err := pgx.ForEachRow(rows, []any{&r.id, &r.eventID, &r.tokenHash, &r.tokenID, &r.teamID, &r.route, &r.usedAt,
		&r.status, &r.latency, &r.ip, &r.agent, &r.method, &r.errMessage}, func() error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage logs: %w", err)
	}
	return out, nil
}

// recentLogs returns the newest limit events in scope matching cond (on
// $4..), by index: per team for a scoped caller, so no sort of a team's
// whole history is needed.
func recentLogs(ctx context.Context, q db.DBTX, s scope, limit int, cond string, extra ...any) ([]logRow, error) {
	if cond == "" {
		cond = "true"
	}
	args := append([]any{s.all, nonNil(s.teams), limit}, extra...)
	var sql string
	if s.all {
		sql = fmt.Sprintf(`SELECT %s FROM usage.events WHERE $1 AND %s AND $2::text[] IS NOT NULL
			ORDER BY used_at DESC, id DESC LIMIT $3`, logColumns, cond)
	} else {
		sql = fmt.Sprintf(`SELECT e.* FROM unnest($2::text[]) AS t(team),
			LATERAL (SELECT %s FROM usage.events WHERE team_id = t.team AND NOT $1 AND %s
			         ORDER BY used_at DESC, id DESC LIMIT $3) e
			ORDER BY e.used_at DESC, e.id DESC LIMIT $3`, logColumns, cond)
	}
	rows, _ := q.Query(ctx, sql, args...)
	return scanLogs(rows)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
