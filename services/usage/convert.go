package usage

import (
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/protoconv"
)

// Domain → proto, for the Server. Lists are never nil: the contract shows
// them as [] when empty.

func overviewOf(f Figures) *usagev1.UsageOverview {
	return &usagev1.UsageOverview{TotalCalls: f.Calls, TotalErrors: f.Errors, AvgResponseTime: f.AvgLatency, SuccessRate: f.SuccessRate}
}

func latencyOf(p Percentiles) *usagev1.Latency {
	return &usagev1.Latency{P50: p.P50, P95: p.P95, P99: p.P99}
}

func statsProto(s *Stats) *usagev1.GetUsageStatsResponse {
	out := &usagev1.GetUsageStatsResponse{
		Overview:    overviewOf(s.Overview),
		HourlyUsage: make([]*usagev1.HourlyUsage, 0, len(s.Hours)), TopTokens: make([]*usagev1.TopToken, 0, len(s.TopTokens)),
		TopRoutes: make([]*usagev1.TopRoute, 0, len(s.TopRoutes)), RecentLogs: logsProto(s.Recent), Unavailable: s.Unavailable,
	}
	for _, h := range s.Hours {
		out.HourlyUsage = append(out.HourlyUsage, &usagev1.HourlyUsage{
			Hour: timestamppb.New(h.Start), CallCount: h.Calls, AvgResponseTime: h.AvgLatency, ErrorCount: h.Errors,
		})
	}
	for _, t := range s.TopTokens {
		out.TopTokens = append(out.TopTokens, &usagev1.TopToken{
			Id: t.ID, Name: t.Name, TeamId: wrapperspb.String(t.TeamID), UsageCount: t.Calls,
			LastUsed: timestamppb.New(t.LastUsed), SuccessRate: t.SuccessRate, AvgResponseTime: t.AvgLatency,
			Latency: latencyOf(t.Latency), Anomaly: t.Anomaly,
		})
	}
	for _, r := range s.TopRoutes {
		out.TopRoutes = append(out.TopRoutes, &usagev1.TopRoute{
			RoutePath: r.Path, RouteName: r.Name, RouteId: protoconv.Int64(r.RouteID), CallCount: r.Calls, AvgResponseTime: r.AvgLatency,
			ErrorCount: r.Errors, SuccessRate: r.SuccessRate, Latency: latencyOf(r.Latency), Anomaly: r.Anomaly, ErrorsByClass: r.ByClass,
		})
	}
	return out
}

func tokenUsageProto(u *TokenUsage) *usagev1.GetTokenUsageResponse {
	stats := &usagev1.TokenUsageStats{
		TotalCalls: u.Calls, ErrorCount: u.Errors, Latency: latencyOf(u.Latency), Anomaly: u.Anomaly, CallsByClass: u.ByClass,
	}
	if u.Calls > 0 {
		stats.AvgResponseTime = wrapperspb.Double(u.AvgLatency)
		stats.FirstUsed = timestamppb.New(u.FirstUsed)
		stats.LastUsed = timestamppb.New(u.LastUsed)
	}
	out := &usagev1.GetTokenUsageResponse{
		Token:             &usagev1.TokenInfo{Id: u.TokenID, Name: u.Name, TeamId: protoconv.NonEmpty(u.TeamID)},
		Stats:             stats,
		RecentUsage:       logsProto(u.Recent),
		RouteDistribution: make([]*usagev1.RouteCount, 0, len(u.Routes)),
	}
	for _, r := range u.Routes {
		out.RouteDistribution = append(out.RouteDistribution, &usagev1.RouteCount{
			RouteId: protoconv.Int64(r.RouteID), RouteName: protoconv.String(r.RouteName), RoutePath: protoconv.String(r.Path), Count: r.Count,
		})
	}
	return out
}

func routeUsageProto(u *RouteUsage) *usagev1.GetRouteUsageResponse {
	out := &usagev1.GetRouteUsageResponse{
		UsageLogs: logsProto(u.Recent), TokenDistribution: make([]*usagev1.TokenCount, 0, len(u.Tokens)),
		Routes: make([]*usagev1.RouteSummary, 0, len(u.Routes)),
	}
	if r := u.Route; r != nil {
		out.Stats = &usagev1.RouteUsageStats{
			TotalCalls: r.Calls, ErrorCount: r.Errors, AvgResponseTime: r.AvgLatency,
			Latency: latencyOf(r.Latency), Anomaly: r.Anomaly, CallsByClass: r.ByClass,
		}
	}
	for _, t := range u.Tokens {
		out.TokenDistribution = append(out.TokenDistribution, &usagev1.TokenCount{TokenId: wrapperspb.Int64(t.TokenID), TokenName: protoconv.String(t.TokenName), Count: t.Count})
	}
	for _, r := range u.Routes {
		out.Routes = append(out.Routes, &usagev1.RouteSummary{RoutePath: r.Path, CallCount: r.Calls, AvgResponseTime: r.AvgLatency, LastUsed: timestamppb.New(r.LastUsed)})
	}
	return out
}

func logsProto(calls []Call) []*usagev1.UsageLog {
	out := make([]*usagev1.UsageLog, 0, len(calls))
	for _, c := range calls {
		out = append(out, &usagev1.UsageLog{
			Id: c.ID, TokenHash: c.TokenHash, TokenId: wrapperspb.Int64(c.TokenID), TokenName: protoconv.String(c.TokenName), UsedAt: timestamppb.New(c.UsedAt),
			RoutePath: protoconv.String(c.RoutePath), RouteId: protoconv.Int64(c.RouteID), RouteName: protoconv.String(c.RouteName),
			ResponseStatus: protoconv.Int32(c.ResponseStatus), ResponseTimeMs: protoconv.Int32(c.ResponseTimeMS),
			IpAddress: protoconv.String(c.IPAddress), UserAgent: protoconv.String(c.UserAgent), RequestMethod: protoconv.String(c.RequestMethod), ErrorMessage: protoconv.String(c.ErrorMessage),
		})
	}
	return out
}

func overviewProto(o *Overview) *usagev1.GetDashboardOverviewResponse {
	out := &usagev1.GetDashboardOverviewResponse{
		Overview:     &usagev1.DashboardCounts{TotalTokens: o.TotalTokens, TotalTeams: o.TotalTeams, TotalRoutes: o.TotalRoutes},
		TokensByTeam: make([]*usagev1.TeamTokens, 0, len(o.TokensByTeam)), TokenTrend: make([]*usagev1.TrendPoint, 0, len(o.TokenTrend)),
		RecentLogs: make([]*usagev1.RecentLog, 0, len(o.RecentEvents)), ExpiringSoon: make([]*usagev1.ExpiringSoon, 0, len(o.ExpiringSoon)),
		Usage: overviewOf(o.Usage), Unavailable: o.Unavailable,
	}
	for _, t := range o.TokensByTeam {
		out.TokensByTeam = append(out.TokensByTeam, &usagev1.TeamTokens{TeamId: t.TeamID, TeamName: t.TeamName, Count: t.Count})
	}
	for _, d := range o.TokenTrend {
		out.TokenTrend = append(out.TokenTrend, &usagev1.TrendPoint{Date: d.Date, Count: d.Count})
	}
	for _, e := range o.RecentEvents {
		details, err := structpb.NewStruct(e.Details)
		if err != nil { // not from a JSON object: cannot happen for AsMap's output
			details = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		}
		out.RecentLogs = append(out.RecentLogs, &usagev1.RecentLog{
			Action: e.Action, EntityType: e.EntityType, EntityId: e.EntityID, CreatedAt: protoconv.Time(e.CreatedAt), Details: details,
		})
	}
	for _, e := range o.ExpiringSoon {
		out.ExpiringSoon = append(out.ExpiringSoon, &usagev1.ExpiringSoon{
			Id: e.ID, Name: e.Name, TeamId: e.TeamID, TeamName: e.TeamName, ExpiresAt: protoconv.Time(e.ExpiresAt),
		})
	}
	return out
}
