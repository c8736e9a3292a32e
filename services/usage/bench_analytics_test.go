package usage

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

// benchEvents is how many events the analytics benchmarks store
// (USAGE_BENCH_EVENTS, default 10,000,000; a smaller count for quick runs).
func benchEvents(b *testing.B) int {
	if v := os.Getenv("USAGE_BENCH_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("USAGE_BENCH_EVENTS=%q: want an integer ≥ 1000", v)
		}
		return n
	}
	return 10_000_000
}

// generateUsage fills a fresh database with n events over the last 30 days
// (200 tokens in 10 teams, 3 routes each out of 30, mixed statuses and
// latencies) with one set-based INSERT … SELECT generate_series, and builds
// the rollups from them with the ingest statement's own rollup SQL.
func generateUsage(b *testing.B, h *harness, n int) {
	ctx := context.Background()
	start := time.Now()
	now := time.Now().UTC()
	for d := -31; d <= 1; d++ {
		if err := ensurePartition(ctx, h.pool, now.AddDate(0, 0, d)); err != nil {
			b.Fatal(err)
		}
	}
	_, err := h.pool.Exec(ctx, `
		INSERT INTO usage.events (event_id, used_at, token_hash, token_id, team_id, route_path, response_status,
		                          response_time_ms, ip_address, user_agent, request_method)
		SELECT 'g' || i, $1::timestamptz - (i::double precision / $2 * interval '30 days'),
		       encode(sha256(('tok' || (i % 200))::bytea), 'hex'), i % 200 + 1, 'team-' || (i % 200 % 10),
		       '/api/r' || ((i % 200 + (i / 200) % 3 * 7) % 30),
		       (ARRAY[200,200,200,200,200,200,201,302,404,500])[i % 10 + 1],
		       (i * 7919) % 1500, '203.0.113.7', 'bench', 'POST'
		FROM generate_series(1, $2::bigint) AS i`, now, n)
	if err != nil {
		b.Fatal(err)
	}
	// The ingest statement's own rollup CTEs, over every stored event.
	if err := queries.RollupAllEvents(ctx, h.pool); err != nil {
		b.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, "VACUUM ANALYZE usage.events, usage.rollup_daily, usage.rollup_dim"); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d events and their rollups in %v", n, time.Since(start).Round(time.Second))
}

// naiveStats is v2.7's /api/usage/stats: every figure computed live over
// the raw events (contract §9).
func naiveStats(ctx context.Context, h *harness) error {
	for _, q := range []string{
		`SELECT count(*), count(*) FILTER (WHERE response_status >= 400), avg(response_time_ms) FROM usage.events`,
		`SELECT date_trunc('hour', used_at), count(*), avg(response_time_ms) FROM usage.events
		 WHERE used_at >= now() - interval '24 hours' GROUP BY 1 ORDER BY 1 DESC`,
		`SELECT token_id, count(*), max(used_at) FROM usage.events WHERE used_at >= now() - interval '7 days'
		 GROUP BY 1 ORDER BY 2 DESC LIMIT 10`,
		`SELECT route_path, count(*), avg(response_time_ms), count(*) FILTER (WHERE response_status >= 400)
		 FROM usage.events WHERE used_at >= now() - interval '7 days' GROUP BY 1 ORDER BY 2 DESC LIMIT 10`,
		`SELECT * FROM usage.events ORDER BY used_at DESC LIMIT 100`,
	} {
		rows, err := h.pool.Query(ctx, q)
		if err != nil {
			return err
		}
		rows.Close()
		if rows.Err() != nil {
			return rows.Err()
		}
	}
	return nil
}

// naiveOverview is the dashboard's usage card computed over raw events.
func naiveOverview(ctx context.Context, h *harness) error {
	var a, b int64
	var c *float64
	return h.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE response_status >= 400), avg(response_time_ms) FROM usage.events`).Scan(&a, &b, &c)
}

// BenchmarkAnalytics measures GET /api/usage/stats and
// /api/dashboard/overview (the service's use cases, with the token, team
// and audit doubles over loopback gRPC) for a global ADMIN — the widest
// scope — and for a one-team DEVELOPER, over USAGE_BENCH_EVENTS stored
// events, beside the naive queries over the raw events.
func BenchmarkAnalytics(b *testing.B) {
	n := benchEvents(b)
	h := newHarnessOn(b, poolFor(b))
	generateUsage(b, h, n)
	ctx := context.Background()
	dev := as(backendDevOf("team-3"))
	var statsAdmin, statsDev, overview latencies
	for b.Loop() {
		for _, c := range []struct {
			l *latencies
			f func() error
		}{
			{&statsAdmin, func() error { _, err := h.stats(as(globalAdmin)); return err }},
			{&statsDev, func() error { _, err := h.stats(dev); return err }},
			{&overview, func() error { _, err := h.overview(as(globalAdmin)); return err }},
		} {
			t0 := time.Now()
			if err := c.f(); err != nil {
				b.Fatal(err)
			}
			c.l.add(time.Since(t0))
		}
	}
	b.StopTimer()
	var naiveS, naiveO latencies
	for range 3 {
		t0 := time.Now()
		if err := naiveStats(ctx, h); err != nil {
			b.Fatal(err)
		}
		naiveS.add(time.Since(t0))
		t0 = time.Now()
		if err := naiveOverview(ctx, h); err != nil {
			b.Fatal(err)
		}
		naiveO.add(time.Since(t0))
	}
	// Where the time goes: each query of the stats page alone, global scope.
	all := store.Scope{All: true}
	now := time.Now()
	since := dayOf(now).AddDate(0, 0, -6)
	tokens := store.RollupFilter{Dim: store.DimToken, Scope: all, Since: since}
	rts := store.RollupFilter{Dim: store.DimRouteAll, Scope: all, Since: since}
	topTok, _ := queries.TopKeys(ctx, h.pool, tokens, 10, false)
	topRt, _ := queries.TopKeys(ctx, h.pool, rts, 10, true)
	withKeys := func(f store.RollupFilter, since time.Time, keys []string) store.RollupFilter {
		f.Since, f.Keys = since, keys
		return f
	}
	for _, st := range []struct {
		name string
		f    func() error
	}{
		{"totals", func() error { _, err := totals(ctx, h.pool, all); return err }},
		{"hourly", func() error {
			_, err := queries.HourlyTotals(ctx, h.pool, store.HourlyTotalsParams{Since: now.Add(-24 * time.Hour), AllTeams: true, TeamIds: []string{}})
			return err
		}},
		{"top_tokens", func() error { _, err := queries.TopKeys(ctx, h.pool, tokens, 10, false); return err }},
		{"token_aggs", func() error { _, _, err := dimAggs(ctx, h.pool, withKeys(tokens, since, topTok)); return err }},
		{"token_anomaly", func() error {
			_, err := hourlyCalls(ctx, h.pool, withKeys(tokens, now.Add(-anomalyWindow), topTok))
			return err
		}},
		{"top_routes", func() error { _, err := queries.TopKeys(ctx, h.pool, rts, 10, true); return err }},
		{"route_aggs", func() error { _, _, err := dimAggs(ctx, h.pool, withKeys(rts, since, topRt)); return err }},
		{"route_anomaly", func() error {
			_, err := hourlyCalls(ctx, h.pool, withKeys(rts, now.Add(-anomalyWindow), topRt))
			return err
		}},
		{"recent_logs", func() error {
			_, err := queries.RecentEvents(ctx, h.pool, store.EventFilter{Scope: all}, 100)
			return err
		}},
	} {
		var l latencies
		for range 30 {
			t0 := time.Now()
			if err := st.f(); err != nil {
				b.Fatal(err)
			}
			l.add(time.Since(t0))
		}
		b.ReportMetric(l.pct(0.99), "q_"+st.name+"_p99_ms")
	}
	b.ReportMetric(float64(n), "events")
	b.ReportMetric(statsAdmin.pct(0.99), "stats_admin_p99_ms")
	b.ReportMetric(statsDev.pct(0.99), "stats_team_p99_ms")
	b.ReportMetric(naiveS.pct(0.99), "naive_stats_p99_ms")
	b.ReportMetric(overview.pct(0.99), "overview_p99_ms")
	b.ReportMetric(naiveO.pct(0.99), "naive_overview_p99_ms")
	b.ReportMetric(0, "ns/op")
}

// poolFor is a migrated pool on a dedicated database.
func poolFor(b *testing.B) *pgxpoolPool {
	return dbtest.NewPool(b, Migrations)
}
