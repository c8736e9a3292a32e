package usage

import (
	"context"
	"fmt"
	"strconv"
	"time"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/internal/protoconv"
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
func limitOf(v *int32) (int, error) {
	if v == nil {
		return 50, nil
	}
	n := int(*v)
	if n < 1 || n > 500 {
		return 0, errs.Invalid("limit must be between 1 and 500")
	}
	return n, nil
}

// Stats is GET /api/usage/stats.
func (a *analytics) Stats(ctx context.Context) (*Stats, error) {
	_, sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	now := a.now().UTC()
	out := &Stats{Hours: []Hour{}, TopTokens: []TokenFigures{}, TopRoutes: []RouteFigures{}, Recent: []Call{}, Unavailable: []string{}}
	tot, err := totals(ctx, a.db, sc)
	if err != nil {
		return nil, err
	}
	out.Overview = tot.figures()
	hours, err := queries.HourlyTotals(ctx, a.db, store.HourlyTotalsParams{
		Since: now.Add(-24 * time.Hour).Truncate(time.Hour), AllTeams: sc.All, TeamIds: sc.TeamIDs(),
	})
	if err != nil {
		return nil, fmt.Errorf("usage hourly: %w", err)
	}
	for _, h := range hours {
		out.Hours = append(out.Hours, Hour{Start: h.Bucket, Calls: h.Calls, Errors: h.Errors, AvgLatency: avgLatency(h.LatencySum, h.LatencyCount)})
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
			out.TopTokens = append(out.TopTokens, TokenFigures{
				ID: id, Name: tokenName(names, id), TeamID: g.team, Figures: g.figures(), Anomaly: anomalous(perHour[k], now),
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
			r := RouteFigures{Path: k, Name: k, Figures: g.figures(), Anomaly: anomalous(perHour[k], now)}
			if rt := routes[k]; rt != nil {
				id := rt.GetId()
				r.RouteID = &id
				if n := rt.GetName().GetValue(); n != "" {
					r.Name = n
				}
			}
			out.TopRoutes = append(out.TopRoutes, r)
		}
	}
	for _, l := range logs {
		out.Recent = append(out.Recent, callOf(l, names, routes))
	}
	return out, nil
}

func tokenName(names map[int64]*tokenv1.TokenRef, id int64) string {
	if t := names[id]; t != nil {
		return t.GetName()
	}
	return "token " + strconv.FormatInt(id, 10)
}

// callOf is an event with the names the token service gave.
func callOf(l store.EventRow, names map[int64]*tokenv1.TokenRef, routes map[string]*tokenv1.Route) Call {
	c := Call{EventRow: l}
	if t := names[l.TokenID]; t != nil {
		n := t.GetName()
		c.TokenName = &n
	}
	if l.RoutePath != nil {
		if rt := routes[*l.RoutePath]; rt != nil {
			id := rt.GetId()
			c.RouteID = &id
			c.RouteName = protoconv.StringPtr(rt.GetName())
		}
	}
	return c
}
