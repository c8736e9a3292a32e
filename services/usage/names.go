package usage

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
)

// names puts names to the ids and paths the rollups hold, from the token
// service: tokens by id on every read, the route list cached briefly. When
// the token service does not answer, names fall back to ids and paths.
type names struct {
	token tokenv1.TokenServiceClient
	log   *slog.Logger
	now   func() time.Time

	mu        sync.Mutex
	routes    map[string]*tokenv1.Route
	routesAt  time.Time
	routesErr bool
}

func newNames(token tokenv1.TokenServiceClient, log *slog.Logger, now func() time.Time) *names {
	return &names{token: token, log: log, now: now}
}

// tokens returns tokens by id; ok is false when the token service did not
// answer.
func (n *names) tokens(ctx context.Context, ids []int64) (map[int64]*tokenv1.TokenRef, bool) {
	out := map[int64]*tokenv1.TokenRef{}
	ids = uniqueIDs(ids)
	if len(ids) == 0 {
		return out, true
	}
	resp, err := n.token.LookupTokens(ctx, &tokenv1.LookupTokensRequest{Ids: ids})
	if err != nil {
		n.log.WarnContext(ctx, "token names unavailable", "error", err)
		return out, false
	}
	for _, t := range resp.GetTokens() {
		out[t.GetId()] = t
	}
	return out, true
}

func uniqueIDs(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// routeCacheTTL is how long the route list (names of paths) is reused.
const routeCacheTTL = 30 * time.Second

// routesByPath returns routes by path, cached for routeCacheTTL; ok is
// false when the token service did not answer.
func (n *names) routesByPath(ctx context.Context) (map[string]*tokenv1.Route, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.routes != nil && n.now().Sub(n.routesAt) < routeCacheTTL {
		return n.routes, !n.routesErr
	}
	resp, err := n.token.ListRoutes(ctx, &tokenv1.ListRoutesRequest{})
	n.routesAt = n.now()
	n.routesErr = err != nil
	if err != nil {
		n.log.WarnContext(ctx, "route names unavailable", "error", err)
		n.routes = map[string]*tokenv1.Route{}
		return n.routes, false
	}
	n.routes = map[string]*tokenv1.Route{}
	for _, r := range resp.GetRoutes() {
		n.routes[r.GetPath()] = r
	}
	return n.routes, true
}
