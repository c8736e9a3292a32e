package usage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/internal/protoconv"
	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

// TokenUsage is GET /api/usage/token/{id}.
func (a *analytics) TokenUsage(ctx context.Context, tokenID int64, limitV *int32) (*TokenUsage, error) {
	p, _, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	limit, err := limitOf(limitV)
	if err != nil {
		return nil, err
	}
	if tokenID <= 0 {
		return nil, errs.NotFound("Token not found")
	}
	resp, err := a.token.LookupTokens(ctx, &tokenv1.LookupTokensRequest{Ids: []int64{tokenID}})
	if err != nil {
		return nil, errs.Wrap(err, errs.ErrUnavailable, errTokenServiceDown.Error())
	}
	var tok *tokenv1.TokenRef
	for _, t := range resp.GetTokens() {
		if t.GetId() == tokenID {
			tok = t
		}
	}
	// A token of a team the caller has no role in is "Token not found",
	// as the token service answers for its by-id operations: a refusal
	// must not tell who owns which id.
	if tok == nil || !authz.CanRead(p, tok.GetTeamId()) {
		return nil, errs.NotFound("Token not found")
	}
	if err := authz.Authorize(p, authz.TokenUsage, authz.Resource{Team: tok.GetTeamId()}); err != nil {
		return nil, err
	}
	all := store.Scope{All: true}
	key := strconv.FormatInt(tokenID, 10)
	aggs, _, err := dimAggs(ctx, a.db, store.RollupFilter{Dim: store.DimToken, Scope: all, Keys: []string{key}})
	if err != nil {
		return nil, err
	}
	total := aggs[key]
	if total == nil {
		total = &agg{}
	}
	now := a.now()
	perHour, err := hourlyCalls(ctx, a.db, store.RollupFilter{Dim: store.DimToken, Scope: all, Since: now.Add(-anomalyWindow), Keys: []string{key}})
	if err != nil {
		return nil, err
	}
	dist, err := queries.RouteDistributionOfToken(ctx, a.db, store.RouteDistributionOfTokenParams{
		TokenID: tokenID, AllTeams: all.All, TeamIds: all.TeamIDs(), MaxRows: 1000,
	})
	if err != nil {
		return nil, fmt.Errorf("usage distribution by route_path: %w", err)
	}
	logs, err := queries.RecentEvents(ctx, a.db, store.EventFilter{Scope: all, TokenID: tokenID}, limit)
	if err != nil {
		return nil, err
	}
	routes, _ := a.names.routesByPath(ctx)
	names := map[int64]*tokenv1.TokenRef{tokenID: tok}
	out := &TokenUsage{
		TokenID: tok.GetId(), Name: tok.GetName(), TeamID: tok.GetTeamId(),
		Figures: total.figures(), Anomaly: anomalous(perHour[key], now),
		Recent: []Call{}, Routes: []RouteCount{},
	}
	for _, l := range logs {
		out.Recent = append(out.Recent, callOf(l, names, routes))
	}
	// Per route, count DESC; calls without a route or on a route that no
	// longer exists collapse into one all-null bucket (as v2.7 did).
	var unknown int64
	for _, d := range dist {
		rt := routes[d.Key]
		if d.Key == "" || rt == nil {
			unknown += d.Count
			continue
		}
		id, path := rt.GetId(), d.Key
		rc := RouteCount{RouteID: &id, Path: &path, Count: d.Count}
		rc.RouteName = protoconv.StringPtr(rt.GetName())
		out.Routes = append(out.Routes, rc)
	}
	if unknown > 0 {
		out.Routes = append(out.Routes, RouteCount{Count: unknown})
	}
	slices.SortStableFunc(out.Routes, func(a, b RouteCount) int { return cmp.Compare(b.Count, a.Count) })
	return out, nil
}

// RouteUsage is GET /api/usage/route[?route_path=]: without a path, the
// routes by calls; with one, that route's figures.
func (a *analytics) RouteUsage(ctx context.Context, path string, limitV *int32) (*RouteUsage, error) {
	_, sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	limit, err := limitOf(limitV)
	if err != nil {
		return nil, err
	}
	if len(path) > maxRouteLen {
		return nil, errs.Invalid("route_path is too long")
	}
	out := &RouteUsage{Recent: []Call{}, Tokens: []TokenCount{}, Routes: []RouteFigures{}}
	if path == "" {
		aggs, order, err := dimAggs(ctx, a.db, store.RollupFilter{Dim: routeDim(sc), Scope: sc})
		if err != nil {
			return nil, err
		}
		order = slices.DeleteFunc(order, func(k string) bool { return k == "" })
		slices.SortStableFunc(order, func(a, b string) int { return cmp.Compare(aggs[b].calls, aggs[a].calls) })
		for _, k := range order[:min(len(order), limit)] {
			g := aggs[k]
			out.Routes = append(out.Routes, RouteFigures{Path: k, Name: k, Figures: g.figures()})
		}
		return out, nil
	}
	aggs, _, err := dimAggs(ctx, a.db, store.RollupFilter{Dim: routeDim(sc), Scope: sc, Keys: []string{path}})
	if err != nil {
		return nil, err
	}
	total := &agg{}
	for _, g := range aggs { // one per team for "route"
		for c, n := range g.byClass {
			if total.byClass == nil {
				total.byClass = map[int16]int64{}
			}
			total.byClass[c] += n
		}
		total.calls += g.calls
		total.errors += g.errors
		total.latencySum += g.latencySum
		total.latencyCnt += g.latencyCnt
		total.latencyMax = max(total.latencyMax, g.latencyMax)
		total.hist = addHist(total.hist, g.hist)
	}
	now := a.now()
	perHour, err := hourlyCalls(ctx, a.db, store.RollupFilter{Dim: routeDim(sc), Scope: sc, Since: now.Add(-anomalyWindow), Keys: []string{path}})
	if err != nil {
		return nil, err
	}
	out.Route = &RouteFigures{Path: path, Name: path, Figures: total.figures(), Anomaly: anomalous(perHour[path], now)}
	dist, err := queries.TokenDistributionOfRoute(ctx, a.db, store.TokenDistributionOfRouteParams{
		RoutePath: path, AllTeams: sc.All, TeamIds: sc.TeamIDs(), MaxRows: 5,
	})
	if err != nil {
		return nil, fmt.Errorf("usage distribution by token_id: %w", err)
	}
	logs, err := queries.RecentEvents(ctx, a.db, store.EventFilter{Scope: sc, RoutePath: path}, limit)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, d := range dist {
		id, _ := strconv.ParseInt(d.Key, 10, 64)
		ids = append(ids, id)
	}
	for _, l := range logs {
		ids = append(ids, l.TokenID)
	}
	names, _ := a.names.tokens(ctx, ids)
	routes, _ := a.names.routesByPath(ctx)
	for _, l := range logs {
		out.Recent = append(out.Recent, callOf(l, names, routes))
	}
	// Top 5 tokens by count.
	for _, d := range dist {
		id, _ := strconv.ParseInt(d.Key, 10, 64)
		tc := TokenCount{TokenID: id, Count: d.Count}
		if t := names[id]; t != nil {
			n := t.GetName()
			tc.TokenName = &n
		}
		out.Tokens = append(out.Tokens, tc)
	}
	return out, nil
}
