package usage

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

// analytics is the usage reads: the stats page here, a token's and a
// route's usage in analytics_drilldown.go. Every figure comes from the
// rollups, raw events only for the newest-N lists; names come from the
// token service through names.
type analytics struct {
	db    store.DBTX
	token tokenv1.TokenServiceClient
	names *names
	now   func() time.Time
}

// callerScope is what the caller may read.
func callerScope(ctx context.Context) (*auth.Principal, store.Scope, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, store.Scope{}, err
	}
	all, teams := authz.ReadScope(p)
	return p, store.Scope{All: all, Teams: teams}, nil
}

// limitOf applies the contract's default (50) and our cap (500).
func limitOf(v *wrapperspb.Int32Value) (int, error) {
	if v == nil {
		return 50, nil
	}
	n := int(v.GetValue())
	if n < 1 || n > 500 {
		return 0, errs.Invalid("limit must be between 1 and 500")
	}
	return n, nil
}

// Stats is GET /api/usage/stats.
func (a *analytics) Stats(ctx context.Context) (*usagev1.GetUsageStatsResponse, error) {
	_, sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	now := a.now().UTC()
	out := &usagev1.GetUsageStatsResponse{
		HourlyUsage: []*usagev1.HourlyUsage{}, TopTokens: []*usagev1.TopToken{}, TopRoutes: []*usagev1.TopRoute{},
		RecentLogs: []*usagev1.UsageLog{}, Unavailable: []string{},
	}
	tot, err := totals(ctx, a.db, sc)
	if err != nil {
		return nil, err
	}
	out.Overview = overviewOf(&tot)
	hours, err := queries.HourlyTotals(ctx, a.db, store.HourlyTotalsParams{
		Since: now.Add(-24 * time.Hour).Truncate(time.Hour), AllTeams: sc.All, TeamIds: sc.TeamIDs(),
	})
	if err != nil {
		return nil, fmt.Errorf("usage hourly: %w", err)
	}
	for _, h := range hours {
		out.HourlyUsage = append(out.HourlyUsage, &usagev1.HourlyUsage{
			Hour: timestamppb.New(h.Bucket), CallCount: h.Calls, AvgResponseTime: avgLatency(h.LatencySum, h.LatencyCount), ErrorCount: h.Errors,
		})
	}
	// "Last 7 days": today and the 6 UTC days before, from the daily rollups.
	since := dayOf(now).AddDate(0, 0, -6)

	// Top tokens.
	tokens := store.RollupFilter{Dim: store.DimToken, Scope: sc, Since: since}
	tokKeys, err := queries.TopKeys(ctx, a.db, tokens, 10, false)
	if err != nil {
		return nil, err
	}
	logs, err := queries.RecentEvents(ctx, a.db, store.EventFilter{Scope: sc}, 100)
	if err != nil {
		return nil, err
	}
	var tokenIDs []int64
	for _, k := range tokKeys {
		id, _ := strconv.ParseInt(k, 10, 64)
		tokenIDs = append(tokenIDs, id)
	}
	for _, l := range logs {
		tokenIDs = append(tokenIDs, l.TokenID)
	}
	names, tokOK := a.names.tokens(ctx, tokenIDs)
	routes, routesOK := a.names.routesByPath(ctx)
	if !tokOK {
		out.Unavailable = append(out.Unavailable, "token")
	} else if !routesOK {
		out.Unavailable = append(out.Unavailable, "routes")
	}
	if len(tokKeys) > 0 {
		tokens.Keys = tokKeys
		aggs, _, err := dimAggs(ctx, a.db, tokens)
		if err != nil {
			return nil, err
		}
		perHour, err := hourlyCalls(ctx, a.db, store.RollupFilter{Dim: store.DimToken, Scope: sc, Since: now.Add(-anomalyWindow), Keys: tokKeys})
		if err != nil {
			return nil, err
		}
		for i, k := range tokKeys {
			g := aggs[k]
			if g == nil {
				continue
			}
			id := tokenIDs[i]
			out.TopTokens = append(out.TopTokens, &usagev1.TopToken{
				Id: id, Name: tokenName(names, id), TeamId: wrapperspb.String(g.team), UsageCount: g.calls,
				LastUsed: timestamppb.New(g.lastUsed), SuccessRate: g.successRate(), AvgResponseTime: g.avgLatency(),
				Latency: latencyOf(g), Anomaly: anomalous(perHour[k], now),
			})
		}
	}
	// Top routes.
	rts := store.RollupFilter{Dim: routeDim(sc), Scope: sc, Since: since}
	routeKeys, err := queries.TopKeys(ctx, a.db, rts, 10, true)
	if err != nil {
		return nil, err
	}
	if len(routeKeys) > 0 {
		rts.Keys = routeKeys
		aggs, _, err := dimAggs(ctx, a.db, rts)
		if err != nil {
			return nil, err
		}
		perHour, err := hourlyCalls(ctx, a.db, store.RollupFilter{Dim: routeDim(sc), Scope: sc, Since: now.Add(-anomalyWindow), Keys: routeKeys})
		if err != nil {
			return nil, err
		}
		for _, k := range routeKeys {
			g := aggs[k]
			if g == nil {
				continue
			}
			r := &usagev1.TopRoute{
				RoutePath: k, RouteName: k, CallCount: g.calls, AvgResponseTime: g.avgLatency(), ErrorCount: g.errors,
				SuccessRate: g.successRate(), Latency: latencyOf(g), Anomaly: anomalous(perHour[k], now), ErrorsByClass: g.classes(),
			}
			if rt := routes[k]; rt != nil {
				r.RouteId = wrapperspb.Int64(rt.GetId())
				if n := rt.GetName().GetValue(); n != "" {
					r.RouteName = n
				}
			}
			out.TopRoutes = append(out.TopRoutes, r)
		}
	}
	for _, l := range logs {
		out.RecentLogs = append(out.RecentLogs, logOf(l, names, routes))
	}
	return out, nil
}
