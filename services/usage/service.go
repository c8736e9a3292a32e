package usage

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Service is the usage service's use cases: ingest and the analytics.
type Service struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	verifier  *Verifier
	ingester  *Ingester
	tokens    *tokenCache
	tokenSvc  tokenv1.TokenServiceClient
	teamSvc   teamv1.TeamServiceClient
	auditSvc  auditv1.AuditServiceClient
	retention time.Duration
	now       func() time.Time

	routesMu  sync.Mutex
	routes    map[string]*tokenv1.Route
	routesAt  time.Time
	routesErr bool
}

// ServiceDeps are what a Service needs.
type ServiceDeps struct {
	Pool      *pgxpool.Pool
	Log       *slog.Logger
	Ingest    IngestConfig
	Ingester  *Ingester
	Token     tokenv1.TokenServiceClient
	Team      teamv1.TeamServiceClient
	Audit     auditv1.AuditServiceClient
	Retention time.Duration
	Now       func() time.Time
}

// NewService builds the use cases.
func NewService(d ServiceDeps) *Service {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	var secrets [][]byte
	for _, s := range []string{d.Ingest.Secret.Reveal(), d.Ingest.PreviousSecret.Reveal()} {
		if s != "" {
			secrets = append(secrets, []byte(s))
		}
	}
	return &Service{
		pool: d.Pool, log: d.Log, ingester: d.Ingester, tokenSvc: d.Token, teamSvc: d.Team, auditSvc: d.Audit,
		verifier:  &Verifier{Secrets: secrets, AllowUnsigned: d.Ingest.AllowUnsigned, Now: d.Now},
		tokens:    newTokenCache(d.Token),
		retention: d.Retention, now: d.Now,
	}
}

// ---- ingest ----

// Ingest verifies, decodes and stores one posted body; nothing is stored
// unless every event is valid and belongs to a known token.
func (s *Service) Ingest(ctx context.Context, body []byte, sig, ts string) (accepted, duplicates int, err error) {
	if _, err := s.verifier.Verify(sig, ts, body); err != nil {
		return 0, 0, err
	}
	now := s.now()
	events, batch, err := DecodePayload(body, now, now.Add(-s.retention))
	if err != nil {
		return 0, 0, err
	}
	// Signed or not, every hash must name a token (unsigned posts may only
	// report existing tokens; signed ones must not store garbage either).
	var hashes []string
	seen := map[string]bool{}
	for _, e := range events {
		if !seen[e.TokenHash] {
			seen[e.TokenHash] = true
			hashes = append(hashes, e.TokenHash)
		}
	}
	ids, unknown, err := s.tokens.resolve(ctx, hashes)
	if err != nil {
		return 0, 0, err
	}
	stored := make([]storedEvent, len(events))
	for i, e := range events {
		if unknown[e.TokenHash] {
			field := "token_hash"
			if batch {
				field = "events[" + strconv.Itoa(i) + "].token_hash"
			}
			return 0, 0, errs.Invalid(field + ": unknown token")
		}
		id := ids[e.TokenHash]
		stored[i] = storedEvent{Event: e, TokenID: id.ID, TeamID: id.Team}
	}
	return s.ingester.Submit(ctx, stored)
}

// ---- analytics ----

// callerScope is what the caller may read.
func callerScope(ctx context.Context) (*auth.Principal, scope, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, scope{}, errs.Unauthenticated("Not authenticated")
	}
	all, teams := authz.ReadScope(p)
	return p, scope{all: all, teams: teams}, nil
}

// Stats is GET /api/usage/stats.
func (s *Service) Stats(ctx context.Context) (*usagev1.GetUsageStatsResponse, error) {
	_, sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	out := &usagev1.GetUsageStatsResponse{
		HourlyUsage: []*usagev1.HourlyUsage{}, TopTokens: []*usagev1.TopToken{}, TopRoutes: []*usagev1.TopRoute{},
		RecentLogs: []*usagev1.UsageLog{}, Unavailable: []string{},
	}
	tot, err := totals(ctx, s.pool, sc)
	if err != nil {
		return nil, err
	}
	out.Overview = overviewOf(&tot)
	hours, err := hourly(ctx, s.pool, sc, now.Add(-24*time.Hour).Truncate(time.Hour))
	if err != nil {
		return nil, err
	}
	for _, h := range hours {
		out.HourlyUsage = append(out.HourlyUsage, &usagev1.HourlyUsage{
			Hour: timestamppb.New(h.hour), CallCount: h.calls, AvgResponseTime: h.avgLatency(), ErrorCount: h.errors,
		})
	}
	// "Last 7 days": today and the 6 UTC days before, from the daily rollups.
	since := dayOf(now).AddDate(0, 0, -6)

	// Top tokens.
	tokKeys, err := topKeys(ctx, s.pool, "token", sc, since, 10, false)
	if err != nil {
		return nil, err
	}
	logs, err := recentLogs(ctx, s.pool, sc, 100, "")
	if err != nil {
		return nil, err
	}
	var tokenIDs []int64
	for _, k := range tokKeys {
		id, _ := strconv.ParseInt(k, 10, 64)
		tokenIDs = append(tokenIDs, id)
	}
	for _, l := range logs {
		tokenIDs = append(tokenIDs, l.tokenID)
	}
	names, tokOK := s.lookupTokens(ctx, tokenIDs)
	routes, routesOK := s.lookupRoutes(ctx)
	if !tokOK {
		out.Unavailable = append(out.Unavailable, "token")
	} else if !routesOK {
		out.Unavailable = append(out.Unavailable, "routes")
	}
	if len(tokKeys) > 0 {
		aggs, _, err := dimAggs(ctx, s.pool, "token", sc, since, tokKeys)
		if err != nil {
			return nil, err
		}
		perHour, err := hourlyCalls(ctx, s.pool, "token", sc, now.Add(-anomalyWindow), tokKeys)
		if err != nil {
			return nil, err
		}
		for i, k := range tokKeys {
			a := aggs[k]
			if a == nil {
				continue
			}
			id := tokenIDs[i]
			t := &usagev1.TopToken{
				Id: id, Name: tokenName(names, id), TeamId: wrapperspb.String(a.team), UsageCount: a.calls,
				LastUsed: timestamppb.New(a.lastUsed), SuccessRate: a.successRate(), AvgResponseTime: a.avgLatency(),
				Latency: latencyOf(a), Anomaly: anomalous(perHour[k], now),
			}
			out.TopTokens = append(out.TopTokens, t)
		}
	}
	// Top routes.
	routeKeys, err := topKeys(ctx, s.pool, routeDim(sc), sc, since, 10, true)
	if err != nil {
		return nil, err
	}
	if len(routeKeys) > 0 {
		aggs, _, err := dimAggs(ctx, s.pool, routeDim(sc), sc, since, routeKeys)
		if err != nil {
			return nil, err
		}
		perHour, err := hourlyCalls(ctx, s.pool, routeDim(sc), sc, now.Add(-anomalyWindow), routeKeys)
		if err != nil {
			return nil, err
		}
		for _, k := range routeKeys {
			a := aggs[k]
			if a == nil {
				continue
			}
			r := &usagev1.TopRoute{
				RoutePath: k, RouteName: k, CallCount: a.calls, AvgResponseTime: a.avgLatency(), ErrorCount: a.errors,
				SuccessRate: a.successRate(), Latency: latencyOf(a), Anomaly: anomalous(perHour[k], now), ErrorsByClass: a.classes(),
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

func logOf(l logRow, names map[int64]*tokenv1.TokenRef, routes map[string]*tokenv1.Route) *usagev1.UsageLog {
	out := &usagev1.UsageLog{
		Id: l.id, TokenHash: l.tokenHash, TokenId: wrapperspb.Int64(l.tokenID), UsedAt: timestamppb.New(l.usedAt),
		RoutePath: str(l.route), ResponseStatus: i32(l.status), ResponseTimeMs: i32(l.latency),
		IpAddress: str(l.ip), UserAgent: str(l.agent), RequestMethod: str(l.method), ErrorMessage: str(l.errMessage),
	}
	if t := names[l.tokenID]; t != nil {
		out.TokenName = wrapperspb.String(t.GetName())
	}
	if l.route != nil {
		if rt := routes[*l.route]; rt != nil {
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

// lookupTokens returns tokens by id; ok is false when the token service
// did not answer (names then fall back to ids).
func (s *Service) lookupTokens(ctx context.Context, ids []int64) (map[int64]*tokenv1.TokenRef, bool) {
	out := map[int64]*tokenv1.TokenRef{}
	ids = uniqueIDs(ids)
	if len(ids) == 0 {
		return out, true
	}
	resp, err := s.tokenSvc.LookupTokens(ctx, &tokenv1.LookupTokensRequest{Ids: ids})
	if err != nil {
		s.log.WarnContext(ctx, "token names unavailable", "error", err)
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

// lookupRoutes returns routes by path, cached briefly; ok is false when
// the token service did not answer (names then fall back to paths).
func (s *Service) lookupRoutes(ctx context.Context) (map[string]*tokenv1.Route, bool) {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	if s.routes != nil && s.now().Sub(s.routesAt) < routeCacheTTL {
		return s.routes, !s.routesErr
	}
	resp, err := s.tokenSvc.ListRoutes(ctx, &tokenv1.ListRoutesRequest{})
	s.routesAt = s.now()
	s.routesErr = err != nil
	if err != nil {
		s.log.WarnContext(ctx, "route names unavailable", "error", err)
		s.routes = map[string]*tokenv1.Route{}
		return s.routes, false
	}
	s.routes = map[string]*tokenv1.Route{}
	for _, r := range resp.GetRoutes() {
		s.routes[r.GetPath()] = r
	}
	return s.routes, true
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

// TokenUsage is GET /api/usage/token/{id}.
func (s *Service) TokenUsage(ctx context.Context, tokenID int64, limitV *wrapperspb.Int32Value) (*usagev1.GetTokenUsageResponse, error) {
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
	resp, err := s.tokenSvc.LookupTokens(ctx, &tokenv1.LookupTokensRequest{Ids: []int64{tokenID}})
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
	all := scope{all: true}
	key := strconv.FormatInt(tokenID, 10)
	aggs, _, err := dimAggs(ctx, s.pool, "token", all, time.Time{}, []string{key})
	if err != nil {
		return nil, err
	}
	total := aggs[key]
	if total == nil {
		total = &agg{}
	}
	now := s.now()
	perHour, err := hourlyCalls(ctx, s.pool, "token", all, now.Add(-anomalyWindow), []string{key})
	if err != nil {
		return nil, err
	}
	stats := &usagev1.TokenUsageStats{
		TotalCalls: total.calls, ErrorCount: total.errors, Latency: latencyOf(total),
		Anomaly: anomalous(perHour[key], now), CallsByClass: total.classes(),
	}
	if total.calls > 0 {
		stats.AvgResponseTime = wrapperspb.Double(total.avgLatency())
		stats.FirstUsed = timestamppb.New(total.firstUsed)
		stats.LastUsed = timestamppb.New(total.lastUsed)
	}
	dist, err := distribution(ctx, s.pool, "route_path", "token_id = $3", all, tokenID, 1000)
	if err != nil {
		return nil, err
	}
	logs, err := recentLogs(ctx, s.pool, all, limit, "token_id = $4", tokenID)
	if err != nil {
		return nil, err
	}
	routes, _ := s.lookupRoutes(ctx)
	names := map[int64]*tokenv1.TokenRef{tokenID: tok}
	out := &usagev1.GetTokenUsageResponse{
		Token:             &usagev1.TokenInfo{Id: tok.GetId(), Name: tok.GetName(), TeamId: nullable(tok.GetTeamId())},
		Stats:             stats,
		RecentUsage:       []*usagev1.UsageLog{},
		RouteDistribution: []*usagev1.RouteCount{},
	}
	for _, l := range logs {
		out.RecentUsage = append(out.RecentUsage, logOf(l, names, routes))
	}
	// Per route, count DESC; calls without a route or on a route that no
	// longer exists collapse into one all-null bucket (as v2.7 did).
	var unknown int64
	for _, d := range dist {
		rt := routes[d.key]
		if d.key == "" || rt == nil {
			unknown += d.count
			continue
		}
		out.RouteDistribution = append(out.RouteDistribution, &usagev1.RouteCount{
			RouteId: wrapperspb.Int64(rt.GetId()), RouteName: rt.GetName(), RoutePath: wrapperspb.String(d.key), Count: d.count,
		})
	}
	if unknown > 0 {
		out.RouteDistribution = append(out.RouteDistribution, &usagev1.RouteCount{Count: unknown})
	}
	slices.SortStableFunc(out.RouteDistribution, func(a, b *usagev1.RouteCount) int { return cmpDesc(a.Count, b.Count) })
	return out, nil
}

func cmpDesc(a, b int64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

func nullable(s string) *wrapperspb.StringValue {
	if s == "" {
		return nil
	}
	return wrapperspb.String(s)
}

// RouteUsage is GET /api/usage/route[?route_path=].
func (s *Service) RouteUsage(ctx context.Context, path string, limitV *wrapperspb.Int32Value) (*usagev1.GetRouteUsageResponse, error) {
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
	out := &usagev1.GetRouteUsageResponse{UsageLogs: []*usagev1.UsageLog{}, TokenDistribution: []*usagev1.TokenCount{}, Routes: []*usagev1.RouteSummary{}}
	if path == "" {
		aggs, order, err := dimAggs(ctx, s.pool, routeDim(sc), sc, time.Time{}, nil)
		if err != nil {
			return nil, err
		}
		order = slices.DeleteFunc(order, func(k string) bool { return k == "" })
		slices.SortStableFunc(order, func(a, b string) int { return cmpDesc(aggs[a].calls, aggs[b].calls) })
		for _, k := range order[:min(len(order), limit)] {
			a := aggs[k]
			out.Routes = append(out.Routes, &usagev1.RouteSummary{RoutePath: k, CallCount: a.calls, AvgResponseTime: a.avgLatency(), LastUsed: timestamppb.New(a.lastUsed)})
		}
		return out, nil
	}
	aggs, _, err := dimAggs(ctx, s.pool, routeDim(sc), sc, time.Time{}, []string{path})
	if err != nil {
		return nil, err
	}
	total := &agg{}
	for _, a := range aggs { // one per team for "route"
		for c, n := range a.byClass {
			if total.byClass == nil {
				total.byClass = map[int16]int64{}
			}
			total.byClass[c] += n
		}
		total.calls += a.calls
		total.errors += a.errors
		total.latencySum += a.latencySum
		total.latencyCnt += a.latencyCnt
		total.latencyMax = max(total.latencyMax, a.latencyMax)
		total.hist = addHist(total.hist, a.hist)
	}
	now := s.now()
	perHour, err := hourlyCalls(ctx, s.pool, routeDim(sc), sc, now.Add(-anomalyWindow), []string{path})
	if err != nil {
		return nil, err
	}
	out.Stats = &usagev1.RouteUsageStats{
		TotalCalls: total.calls, ErrorCount: total.errors, AvgResponseTime: total.avgLatency(),
		Latency: latencyOf(total), Anomaly: anomalous(perHour[path], now), CallsByClass: total.classes(),
	}
	dist, err := distribution(ctx, s.pool, "token_id", "route_path = $3", sc, path, 5)
	if err != nil {
		return nil, err
	}
	logs, err := recentLogs(ctx, s.pool, sc, limit, "route_path = $4", path)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, d := range dist {
		id, _ := strconv.ParseInt(d.key, 10, 64)
		ids = append(ids, id)
	}
	for _, l := range logs {
		ids = append(ids, l.tokenID)
	}
	names, _ := s.lookupTokens(ctx, ids)
	routes, _ := s.lookupRoutes(ctx)
	for _, l := range logs {
		out.UsageLogs = append(out.UsageLogs, logOf(l, names, routes))
	}
	// Top 5 tokens by count.
	for _, d := range dist {
		id, _ := strconv.ParseInt(d.key, 10, 64)
		tc := &usagev1.TokenCount{TokenId: wrapperspb.Int64(id), Count: d.count}
		if t := names[id]; t != nil {
			tc.TokenName = wrapperspb.String(t.GetName())
		}
		out.TokenDistribution = append(out.TokenDistribution, tc)
	}
	return out, nil
}

// Overview is GET /api/dashboard/overview: gathered from the token, team
// and audit services plus the usage totals, each part degrading on its own.
func (s *Service) Overview(ctx context.Context) (*usagev1.GetDashboardOverviewResponse, error) {
	_, sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	out := &usagev1.GetDashboardOverviewResponse{
		Overview:     &usagev1.DashboardCounts{},
		TokensByTeam: []*usagev1.TeamTokens{}, TokenTrend: []*usagev1.TrendPoint{},
		RecentLogs: []*usagev1.RecentLog{}, ExpiringSoon: []*usagev1.ExpiringSoon{}, Unavailable: []string{},
	}
	var (
		wg                 sync.WaitGroup
		stats              *tokenv1.GetTokenStatsResponse
		statsErr, auditErr error
		events             *auditv1.ListRecentEventsResponse
		usageTot           agg
		usageErr           error
		teamCount          int64
		teamCountErr       error
	)
	wg.Add(4)
	go func() {
		defer wg.Done()
		stats, statsErr = s.tokenSvc.GetTokenStats(ctx, &tokenv1.GetTokenStatsRequest{
			TeamIds: sc.teams, AllTeams: sc.all, TrendDays: 7, ExpiringWithinDays: 30, ExpiringLimit: 5,
		})
	}()
	go func() {
		defer wg.Done()
		events, auditErr = s.auditSvc.ListRecentEvents(ctx, &auditv1.ListRecentEventsRequest{TeamIds: sc.teams, AllTeams: sc.all, Limit: 10})
	}()
	go func() {
		defer wg.Done()
		usageTot, usageErr = totals(ctx, s.pool, sc)
	}()
	go func() {
		defer wg.Done()
		if !sc.all {
			teamCount = int64(len(sc.teams))
			return
		}
		// ListTeams is scoped to its caller, and this call's caller is the
		// usage service: CountTeams is the unscoped internal count.
		resp, err := s.teamSvc.CountTeams(ctx, &teamv1.CountTeamsRequest{})
		teamCount, teamCountErr = resp.GetTotal(), err
	}()
	wg.Wait()
	if usageErr != nil {
		return nil, usageErr
	}
	out.Usage = overviewOf(&usageTot)
	out.Overview.TotalTeams = teamCount
	if teamCountErr != nil {
		// The team service is down (or predates CountTeams): count the teams
		// that hold tokens instead, a lower bound, and say so.
		s.log.WarnContext(ctx, "team count unavailable; counting teams with tokens", "error", teamCountErr)
		out.Unavailable = append(out.Unavailable, "team")
		out.Overview.TotalTeams = int64(len(stats.GetTokensByTeam()))
	}
	if statsErr != nil {
		s.log.WarnContext(ctx, "token stats unavailable", "error", statsErr)
		out.Unavailable = append(out.Unavailable, "token")
	} else {
		out.Overview.TotalTokens = stats.GetTotalTokens()
		out.Overview.TotalRoutes = stats.GetTotalRoutes()
		teamIDs := map[string]bool{}
		byTeam := slices.Clone(stats.GetTokensByTeam())
		slices.SortStableFunc(byTeam, func(a, b *tokenv1.TeamTokenCount) int { return cmpDesc(a.GetCount(), b.GetCount()) })
		byTeam = byTeam[:min(len(byTeam), 5)]
		for _, t := range byTeam {
			teamIDs[t.GetTeamId()] = true
		}
		for _, e := range stats.GetExpiringSoon() {
			teamIDs[e.GetTeamId()] = true
		}
		teamNames := s.teamNames(ctx, teamIDs, out)
		for _, t := range byTeam {
			out.TokensByTeam = append(out.TokensByTeam, &usagev1.TeamTokens{TeamId: t.GetTeamId(), TeamName: nameOr(teamNames, t.GetTeamId()), Count: t.GetCount()})
		}
		trend := slices.Clone(stats.GetTokenTrend())
		slices.SortStableFunc(trend, func(a, b *tokenv1.DayCount) int { return -compareStr(a.GetDate(), b.GetDate()) })
		for _, d := range trend {
			if d.GetCount() == 0 {
				continue // v2.7 lists only days with tokens
			}
			out.TokenTrend = append(out.TokenTrend, &usagev1.TrendPoint{Date: d.GetDate(), Count: d.GetCount()})
		}
		for _, e := range stats.GetExpiringSoon() {
			out.ExpiringSoon = append(out.ExpiringSoon, &usagev1.ExpiringSoon{
				Id: e.GetId(), Name: e.GetName(), TeamId: e.GetTeamId(), TeamName: nameOr(teamNames, e.GetTeamId()), ExpiresAt: e.GetExpiresAt(),
			})
		}
	}
	if auditErr != nil {
		s.log.WarnContext(ctx, "recent audit events unavailable", "error", auditErr)
		out.Unavailable = append(out.Unavailable, "audit")
	} else {
		for _, e := range events.GetEvents() {
			details := e.GetDetails()
			if details == nil {
				details = &structpb.Struct{Fields: map[string]*structpb.Value{}}
			}
			out.RecentLogs = append(out.RecentLogs, &usagev1.RecentLog{
				Action: e.GetAction(), EntityType: e.GetEntityType(), EntityId: e.GetEntityId(), CreatedAt: e.GetCreatedAt(), Details: details,
			})
		}
	}
	return out, nil
}

func (s *Service) teamNames(ctx context.Context, ids map[string]bool, out *usagev1.GetDashboardOverviewResponse) map[string]string {
	names := map[string]string{}
	if len(ids) == 0 {
		return names
	}
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	slices.Sort(list)
	resp, err := s.teamSvc.LookupTeams(ctx, &teamv1.LookupTeamsRequest{TeamIds: list})
	if err != nil {
		s.log.WarnContext(ctx, "team names unavailable", "error", err)
		if !slices.Contains(out.Unavailable, "team") {
			out.Unavailable = append(out.Unavailable, "team")
		}
		return names
	}
	for _, t := range resp.GetTeams() {
		names[t.GetId()] = t.GetName()
	}
	return names
}

// nameOr is the team's name, or its id when the team is gone (as v2.7).
func nameOr(names map[string]string, id string) string {
	if n := names[id]; n != "" {
		return n
	}
	return id
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
