package usage

import (
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

// The responses' shared parts, from rollup figures and stored events.

func overviewOf(a *agg) *usagev1.UsageOverview {
	return &usagev1.UsageOverview{TotalCalls: a.calls, TotalErrors: a.errors, AvgResponseTime: a.avgLatency(), SuccessRate: a.successRate()}
}

func latencyOf(a *agg) *usagev1.Latency {
	p := percentiles(a.hist, a.latencyMax)
	return &usagev1.Latency{P50: p.P50, P95: p.P95, P99: p.P99}
}

func tokenName(names map[int64]*tokenv1.TokenRef, id int64) string {
	if t := names[id]; t != nil {
		return t.GetName()
	}
	return "token " + strconv.FormatInt(id, 10)
}

func logOf(l store.EventRow, names map[int64]*tokenv1.TokenRef, routes map[string]*tokenv1.Route) *usagev1.UsageLog {
	out := &usagev1.UsageLog{
		Id: l.ID, TokenHash: l.TokenHash, TokenId: wrapperspb.Int64(l.TokenID), UsedAt: timestamppb.New(l.UsedAt),
		RoutePath: str(l.RoutePath), ResponseStatus: i32(l.ResponseStatus), ResponseTimeMs: i32(l.ResponseTimeMS),
		IpAddress: str(l.IPAddress), UserAgent: str(l.UserAgent), RequestMethod: str(l.RequestMethod), ErrorMessage: str(l.ErrorMessage),
	}
	if t := names[l.TokenID]; t != nil {
		out.TokenName = wrapperspb.String(t.GetName())
	}
	if l.RoutePath != nil {
		if rt := routes[*l.RoutePath]; rt != nil {
			out.RouteId = wrapperspb.Int64(rt.GetId())
			out.RouteName = rt.GetName()
		}
	}
	return out
}

func str(p *string) *wrapperspb.StringValue {
	if p == nil {
		return nil
	}
	return wrapperspb.String(*p)
}

func i32(p *int32) *wrapperspb.Int32Value {
	if p == nil {
		return nil
	}
	return wrapperspb.Int32(*p)
}

func nullable(s string) *wrapperspb.StringValue {
	if s == "" {
		return nil
	}
	return wrapperspb.String(s)
}
