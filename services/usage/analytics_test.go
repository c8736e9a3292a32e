package usage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// seed posts a known mix: core-team token 42 (calls on /api/openai and an
// unknown route), backend-team token 43 (/api/images).
func seed(t *testing.T, h *harness) (coreHash, backendHash string) {
	t.Helper()
	coreHash = h.token.add(42, "n8n-image-workflow", "core-team")
	backendHash = h.token.add(43, "backend-bot", "backend-team")
	now := time.Now()
	var evs []any
	for i := range 20 {
		status := 200
		if i%5 == 0 {
			status = 500
		}
		evs = append(evs, event(coreHash, now.Add(-time.Duration(i)*time.Minute), map[string]any{
			"event_id": fmt.Sprint("c", i), "response_status": status, "response_time_ms": 100 + i*10,
		}))
	}
	for i := range 5 {
		evs = append(evs, event(coreHash, now.Add(-time.Duration(i)*time.Second), map[string]any{
			"event_id": fmt.Sprint("u", i), "route": "/api/unknown", "response_status": 404,
		}))
	}
	for i := range 10 {
		evs = append(evs, event(backendHash, now.Add(-time.Duration(i)*time.Hour), map[string]any{
			"event_id": fmt.Sprint("b", i), "route": "/api/images", "response_status": 302, "response_time_ms": nil,
		}))
	}
	if acc, _, err := h.post(t, mustJSON(t, map[string]any{"events": evs})); err != nil || acc != 35 {
		t.Fatalf("seed: %d, %v", acc, err)
	}
	return coreHash, backendHash
}

func TestStatsScopes(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	checkRollups(t, h.pool)
	checkDims(t, h.pool)

	st, err := h.stats(as(globalAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if o := st.Overview; o.TotalCalls != 35 || o.TotalErrors != 9 || o.SuccessRate != 74.29 {
		t.Errorf("overview %+v", o)
	}
	if len(st.TopTokens) != 2 || st.TopTokens[0].Name != "n8n-image-workflow" || st.TopTokens[0].UsageCount != 25 {
		t.Fatalf("top tokens %v", st.TopTokens)
	}
	if l := st.TopTokens[0].Latency; l.P50 < 150 || l.P50 > 250 || l.P99 < l.P95 || l.P95 < l.P50 {
		t.Errorf("latency %+v", l)
	}
	if len(st.TopRoutes) != 3 || st.TopRoutes[0].RoutePath != "/api/openai" || st.TopRoutes[0].RouteName != "OpenAI" || st.TopRoutes[0].RouteId.GetValue() != 7 {
		t.Fatalf("top routes %v", st.TopRoutes)
	}
	if c := st.TopRoutes[0].ErrorsByClass; c["2xx"] != 16 || c["5xx"] != 4 {
		t.Errorf("errors by class %v", c)
	}
	if len(st.RecentLogs) != 35 || st.RecentLogs[0].UsedAt.AsTime().Before(st.RecentLogs[34].UsedAt.AsTime()) {
		t.Errorf("recent logs: %d, not newest first", len(st.RecentLogs))
	}
	if len(st.Unavailable) != 0 {
		t.Errorf("unavailable %v", st.Unavailable)
	}

	st, err = h.stats(as(backendDev))
	if err != nil {
		t.Fatal(err)
	}
	if st.Overview.TotalCalls != 10 || len(st.TopTokens) != 1 || st.TopTokens[0].Id != 43 || len(st.RecentLogs) != 10 || len(st.TopRoutes) != 1 {
		t.Errorf("backend developer sees other teams: %v", st)
	}
	for _, l := range st.RecentLogs {
		if l.TokenId.GetValue() != 43 {
			t.Errorf("foreign log %v", l)
		}
	}

	st, err = h.stats(as(nobody))
	if err != nil {
		t.Fatal(err)
	}
	if st.Overview.TotalCalls != 0 || st.Overview.SuccessRate != 0 || len(st.TopTokens)+len(st.TopRoutes)+len(st.RecentLogs)+len(st.HourlyUsage) != 0 {
		t.Errorf("a user without teams sees usage: %v", st)
	}
	if _, err := h.stats(context.Background()); !errorsIs(err, errs.ErrUnauthenticated) {
		t.Errorf("anonymous: %v", err)
	}

	// Names degrade, numbers stay.
	h.token.down = true
	h.svc.analytics.names.routesAt = time.Time{}
	st, err = h.stats(as(globalAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if st.TopTokens[0].Name != "token 42" || st.TopRoutes[0].RouteName != "/api/openai" || len(st.Unavailable) != 1 {
		t.Errorf("degraded: %v %v %v", st.TopTokens[0].Name, st.TopRoutes[0].RouteName, st.Unavailable)
	}
}

func errorsIs(err error, k *errs.Kind) bool {
	return err != nil && errsIs(err, k)
}

func TestTokenUsage(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	for _, c := range []struct {
		name string
		ctx  context.Context
		id   int64
		want *errs.Kind
	}{
		{"global admin", as(globalAdmin), 42, nil},
		{"manager of the team", as(coreManager), 42, nil},
		{"viewer of the team", as(coreViewer), 42, errs.ErrPermissionDenied},
		// Outside the token's team: 404, as for unknown ids, so the answer
		// does not tell who owns which id.
		{"developer of another team", as(backendDev), 42, errs.ErrNotFound},
		{"developer of its own team", as(backendDev), 43, errs.ErrPermissionDenied},
		{"no teams", as(nobody), 42, errs.ErrNotFound},
		{"anonymous", context.Background(), 42, errs.ErrUnauthenticated},
		{"unknown token", as(globalAdmin), 999, errs.ErrNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.tokenUsage(c.ctx, c.id, nil)
			if c.want == nil && err != nil || c.want != nil && !errorsIs(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
	r, err := h.tokenUsage(as(coreManager), 42, wrapperspb.Int32(10))
	if err != nil {
		t.Fatal(err)
	}
	if r.Token.Name != "n8n-image-workflow" || r.Stats.TotalCalls != 25 || r.Stats.ErrorCount != 9 || len(r.RecentUsage) != 10 {
		t.Errorf("token usage %v", r)
	}
	if r.Stats.CallsByClass["4xx"] != 5 || r.Stats.AvgResponseTime.GetValue() == 0 || r.Stats.FirstUsed == nil {
		t.Errorf("stats %v", r.Stats)
	}
	if len(r.RouteDistribution) != 2 || r.RouteDistribution[0].RouteName.GetValue() != "OpenAI" || r.RouteDistribution[1].RoutePath != nil || r.RouteDistribution[1].Count != 5 {
		t.Errorf("route distribution %v", r.RouteDistribution)
	}
	if _, err := h.tokenUsage(as(globalAdmin), 42, wrapperspb.Int32(0)); !errorsIs(err, errs.ErrInvalidArgument) {
		t.Errorf("limit 0: %v", err)
	}
	// A token without usage: zero counts, null averages and times.
	h.token.add(44, "idle", "core-team")
	r, err = h.tokenUsage(as(globalAdmin), 44, nil)
	if err != nil || r.Stats.TotalCalls != 0 || r.Stats.AvgResponseTime != nil || r.Stats.LastUsed != nil || len(r.RecentUsage) != 0 {
		t.Errorf("idle token: %v, %v", r, err)
	}
}

func TestRouteUsage(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	r, err := h.routeUsage(as(globalAdmin), "/api/openai", wrapperspb.Int32(5))
	if err != nil {
		t.Fatal(err)
	}
	if r.Stats.TotalCalls != 20 || r.Stats.ErrorCount != 4 || len(r.UsageLogs) != 5 || r.UsageLogs[0].TokenName.GetValue() != "n8n-image-workflow" {
		t.Errorf("route usage %v", r)
	}
	if len(r.TokenDistribution) != 1 || r.TokenDistribution[0].Count != 20 {
		t.Errorf("token distribution %v", r.TokenDistribution)
	}
	r, err = h.routeUsage(as(backendDev), "/api/openai", nil)
	if err != nil || r.Stats.TotalCalls != 0 || len(r.UsageLogs) != 0 || len(r.TokenDistribution) != 0 {
		t.Errorf("other team's route usage leaks: %v %v", r, err)
	}
	r, err = h.routeUsage(as(globalAdmin), "", nil)
	if err != nil || r.Stats != nil || len(r.Routes) != 3 || r.Routes[0].RoutePath != "/api/openai" {
		t.Errorf("route list %v %v", r, err)
	}
	if _, err := h.routeUsage(as(globalAdmin), "/x", wrapperspb.Int32(501)); !errorsIs(err, errs.ErrInvalidArgument) {
		t.Errorf("limit 501: %v", err)
	}
}

func TestOverview(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	o, err := h.overview(as(globalAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if o.Overview.TotalTokens != 12 || o.Overview.TotalTeams != 5 || len(o.TokensByTeam) != 5 || o.TokensByTeam[0].TeamName != "Backend Team" {
		t.Errorf("overview %v", o)
	}
	if len(o.TokenTrend) != 2 || o.TokenTrend[0].Date != "2025-11-08" || o.ExpiringSoon[0].TeamName != "Backend Team" || len(o.RecentLogs) != 1 || o.Usage.TotalCalls != 35 {
		t.Errorf("overview %v", o)
	}
	o, err = h.overview(as(backendDev))
	if err != nil || o.Overview.TotalTokens != 6 || o.Overview.TotalTeams != 1 || o.Usage.TotalCalls != 10 {
		t.Errorf("scoped overview %v %v", o, err)
	}
	h.token.down = true
	o, err = h.overview(as(globalAdmin))
	if err != nil || len(o.Unavailable) != 1 || o.Unavailable[0] != "token" || o.Overview.TotalTokens != 0 || len(o.RecentLogs) != 1 {
		t.Errorf("degraded overview %v %v", o, err)
	}
}
