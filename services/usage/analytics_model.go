package usage

import (
	"time"

	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

// What the analytics reads return; the Server turns them into responses
// (convert.go).

// Figures are the summed figures of a set of calls.
type Figures struct {
	Calls, Errors int64
	// AvgLatency is the mean latency in ms (0 without latencies).
	AvgLatency float64
	// SuccessRate is the share of calls below 400, in percent (0 without calls).
	SuccessRate float64
	Latency     Percentiles
	// ByClass counts calls per status class ("2xx", …, "unknown").
	ByClass             map[string]int64
	FirstUsed, LastUsed time.Time
}

// Hour is one hour's figures.
type Hour struct {
	Start         time.Time
	Calls, Errors int64
	AvgLatency    float64
}

// TokenFigures are a token's figures over a period.
type TokenFigures struct {
	ID           int64
	Name, TeamID string
	Figures
	Anomaly bool
}

// RouteFigures are a route path's figures over a period; Name is the
// route's name, or the path when the route is unknown or unnamed.
type RouteFigures struct {
	Path, Name string
	RouteID    *int64
	Figures
	Anomaly bool
}

// Call is one stored event with the names of its token and route, when
// the token service knows them.
type Call struct {
	store.EventRow
	TokenName *string
	RouteID   *int64
	RouteName *string
}

// Stats is the usage stats page.
type Stats struct {
	Overview    Figures
	Hours       []Hour
	TopTokens   []TokenFigures
	TopRoutes   []RouteFigures
	Recent      []Call
	Unavailable []string
}

// RouteCount is the calls of one route, or (all nil) of calls without a
// known route.
type RouteCount struct {
	RouteID   *int64
	RouteName *string
	Path      *string
	Count     int64
}

// TokenUsage is one token's usage.
type TokenUsage struct {
	TokenID      int64
	Name, TeamID string
	Figures
	Anomaly bool
	Recent  []Call
	Routes  []RouteCount
}

// TokenCount is the calls of one token.
type TokenCount struct {
	TokenID   int64
	TokenName *string
	Count     int64
}

// RouteUsage is one route's usage (Route set), or the list of routes by
// calls (Routes).
type RouteUsage struct {
	Route  *RouteFigures
	Recent []Call
	Tokens []TokenCount
	Routes []RouteFigures
}
