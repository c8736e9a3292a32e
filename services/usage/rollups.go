package usage

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

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

func (a *agg) avgLatency() float64 { return avgLatency(a.latencySum, a.latencyCnt) }

func avgLatency(sum, count int64) float64 {
	if count == 0 {
		return 0
	}
	return math.Round(float64(sum)/float64(count)*100) / 100
}

// successRate is the share of calls below 400, in percent (0 without calls).
func (a *agg) successRate() float64 {
	if a.calls == 0 {
		return 0
	}
	return math.Round(float64(a.calls-a.errors)/float64(a.calls)*10000) / 100
}

func (a *agg) add(r *store.DimRow) {
	a.calls += r.Calls
	a.errors += r.Errors
	a.latencySum += r.LatencySum
	a.latencyCnt += r.LatencyCount
	a.latencyMax = max(a.latencyMax, r.LatencyMax)
	if r.Hist != nil {
		a.hist = addHist(a.hist, r.Hist)
	}
	if a.firstUsed.IsZero() || r.FirstUsed.Before(a.firstUsed) {
		a.firstUsed = r.FirstUsed
	}
	if r.LastUsed.After(a.lastUsed) {
		a.lastUsed = r.LastUsed
	}
	if a.byClass == nil {
		a.byClass = map[int16]int64{}
	}
	a.byClass[r.StatusClass] += r.Calls
}

func (a *agg) figures() Figures {
	return Figures{
		Calls: a.calls, Errors: a.errors, AvgLatency: a.avgLatency(), SuccessRate: a.successRate(),
		Latency: percentiles(a.hist, a.latencyMax), ByClass: a.classes(), FirstUsed: a.firstUsed, LastUsed: a.lastUsed,
	}
}

// className spells a status class as the API shows it.
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

// routeDim is the route dimension a scope reads: per team, or over every
// team for a caller who sees everything.
func routeDim(s store.Scope) store.Dimension {
	if s.All {
		return store.DimRouteAll
	}
	return store.DimRoute
}

// totals sums the daily team rollups in scope (all time: as long as
// retention keeps them).
func totals(ctx context.Context, db store.DBTX, s store.Scope) (agg, error) {
	t, err := queries.Totals(ctx, db, store.TotalsParams{AllTeams: s.All, TeamIds: s.TeamIDs()})
	if err != nil {
		return agg{}, fmt.Errorf("usage totals: %w", err)
	}
	return agg{calls: t.Calls, errors: t.Errors, latencySum: t.LatencySum, latencyCnt: t.LatencyCount}, nil
}

// dimAggs sums the daily rollups of f per key, with merged histograms and
// counts per status class. order lists the keys as first seen.
func dimAggs(ctx context.Context, db store.DBTX, f store.RollupFilter) (map[string]*agg, []string, error) {
	rows, err := queries.DailyRows(ctx, db, f)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]*agg{}
	var order []string
	for i := range rows {
		r := &rows[i]
		a := out[r.Key]
		if a == nil {
			a = &agg{team: r.TeamID}
			out[r.Key] = a
			order = append(order, r.Key)
		}
		a.add(r)
	}
	return out, order, nil
}

// hourlyCalls returns calls per key and hour of f (for anomalous).
func hourlyCalls(ctx context.Context, db store.DBTX, f store.RollupFilter) (map[string]map[time.Time]int64, error) {
	rows, err := queries.HourlyCalls(ctx, db, f)
	if err != nil {
		return nil, err
	}
	out := map[string]map[time.Time]int64{}
	for _, r := range rows {
		if out[r.Key] == nil {
			out[r.Key] = map[time.Time]int64{}
		}
		out[r.Key][r.Bucket.UTC()] = r.Calls
	}
	return out, nil
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
