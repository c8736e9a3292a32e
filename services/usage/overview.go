package usage

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

// dashboard is the dashboard overview: the token, team and audit services'
// parts fetched side by side with the usage totals, each part degrading on
// its own when its service does not answer.
type dashboard struct {
	db    store.DBTX
	token tokenv1.TokenServiceClient
	team  teamv1.TeamServiceClient
	audit auditv1.AuditServiceClient
	log   *slog.Logger
}

// Overview is the dashboard's overview.
type Overview struct {
	TotalTokens, TotalTeams, TotalRoutes int64
	// TokensByTeam is the five teams with the most tokens, most first.
	TokensByTeam []TeamTokens
	// TokenTrend is the tokens created per day, newest first, days with
	// tokens only.
	TokenTrend   []DayCount
	RecentEvents []AuditEntry
	ExpiringSoon []ExpiringToken
	Usage        Figures
	Unavailable  []string
}

// TeamTokens is a team's token count.
type TeamTokens struct {
	TeamID, TeamName string
	Count            int64
}

// DayCount is a count on a date (YYYY-MM-DD).
type DayCount struct {
	Date  string
	Count int64
}

// AuditEntry is one recent audit event; Details is its JSON object.
type AuditEntry struct {
	Action, EntityType, EntityID string
	CreatedAt                    *time.Time
	Details                      map[string]any
}

// ExpiringToken is a token that expires soon.
type ExpiringToken struct {
	ID                     int64
	Name, TeamID, TeamName string
	ExpiresAt              *time.Time
}

// Overview is GET /api/dashboard/overview: gathered from the token, team
// and audit services plus the usage totals, each part degrading on its own.
func (d *dashboard) Overview(ctx context.Context) (*Overview, error) {
	_, sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	out := &Overview{
		TokensByTeam: []TeamTokens{}, TokenTrend: []DayCount{},
		RecentEvents: []AuditEntry{}, ExpiringSoon: []ExpiringToken{}, Unavailable: []string{},
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
		stats, statsErr = d.token.GetTokenStats(ctx, &tokenv1.GetTokenStatsRequest{
			TeamIds: sc.Teams, AllTeams: sc.All, TrendDays: 7, ExpiringWithinDays: 30, ExpiringLimit: 5,
		})
	}()
	go func() {
		defer wg.Done()
		events, auditErr = d.audit.ListRecentEvents(ctx, &auditv1.ListRecentEventsRequest{TeamIds: sc.Teams, AllTeams: sc.All, Limit: 10})
	}()
	go func() {
		defer wg.Done()
		usageTot, usageErr = totals(ctx, d.db, sc)
	}()
	go func() {
		defer wg.Done()
		if !sc.All {
			teamCount = int64(len(sc.Teams))
			return
		}
		// ListTeams is scoped to its caller, and this call's caller is the
		// usage service: CountTeams is the unscoped internal count.
		resp, err := d.team.CountTeams(ctx, &teamv1.CountTeamsRequest{})
		teamCount, teamCountErr = resp.GetTotal(), err
	}()
	wg.Wait()
	if usageErr != nil {
		return nil, usageErr
	}
	out.Usage = usageTot.figures()
	out.TotalTeams = teamCount
	if teamCountErr != nil {
		// The team service is down (or predates CountTeams): count the teams
		// that hold tokens instead, a lower bound, and say so.
		d.log.WarnContext(ctx, "team count unavailable; counting teams with tokens", "error", teamCountErr)
		out.Unavailable = append(out.Unavailable, "team")
		out.TotalTeams = int64(len(stats.GetTokensByTeam()))
	}
	if statsErr != nil {
		d.log.WarnContext(ctx, "token stats unavailable", "error", statsErr)
		out.Unavailable = append(out.Unavailable, "token")
	} else {
		out.TotalTokens = stats.GetTotalTokens()
		out.TotalRoutes = stats.GetTotalRoutes()
		teamIDs := map[string]bool{}
		byTeam := slices.Clone(stats.GetTokensByTeam())
		slices.SortStableFunc(byTeam, func(a, b *tokenv1.TeamTokenCount) int { return cmp.Compare(b.GetCount(), a.GetCount()) })
		byTeam = byTeam[:min(len(byTeam), 5)]
		for _, t := range byTeam {
			teamIDs[t.GetTeamId()] = true
		}
		for _, e := range stats.GetExpiringSoon() {
			teamIDs[e.GetTeamId()] = true
		}
		teamNames := d.teamNames(ctx, teamIDs, out)
		for _, t := range byTeam {
			out.TokensByTeam = append(out.TokensByTeam, TeamTokens{TeamID: t.GetTeamId(), TeamName: nameOr(teamNames, t.GetTeamId()), Count: t.GetCount()})
		}
		trend := slices.Clone(stats.GetTokenTrend())
		slices.SortStableFunc(trend, func(a, b *tokenv1.DayCount) int { return cmp.Compare(b.GetDate(), a.GetDate()) })
		for _, d := range trend {
			if d.GetCount() == 0 {
				continue // v2.7 lists only days with tokens
			}
			out.TokenTrend = append(out.TokenTrend, DayCount{Date: d.GetDate(), Count: d.GetCount()})
		}
		for _, e := range stats.GetExpiringSoon() {
			out.ExpiringSoon = append(out.ExpiringSoon, ExpiringToken{
				ID: e.GetId(), Name: e.GetName(), TeamID: e.GetTeamId(), TeamName: nameOr(teamNames, e.GetTeamId()), ExpiresAt: timeOf(e.GetExpiresAt()),
			})
		}
	}
	if auditErr != nil {
		d.log.WarnContext(ctx, "recent audit events unavailable", "error", auditErr)
		out.Unavailable = append(out.Unavailable, "audit")
	} else {
		for _, e := range events.GetEvents() {
			out.RecentEvents = append(out.RecentEvents, AuditEntry{
				Action: e.GetAction(), EntityType: e.GetEntityType(), EntityID: e.GetEntityId(), CreatedAt: timeOf(e.GetCreatedAt()),
				Details: e.GetDetails().AsMap(),
			})
		}
	}
	return out, nil
}

func (d *dashboard) teamNames(ctx context.Context, ids map[string]bool, out *Overview) map[string]string {
	names := map[string]string{}
	if len(ids) == 0 {
		return names
	}
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	slices.Sort(list)
	resp, err := d.team.LookupTeams(ctx, &teamv1.LookupTeamsRequest{TeamIds: list})
	if err != nil {
		d.log.WarnContext(ctx, "team names unavailable", "error", err)
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

// timeOf is a timestamp the other services sent, nil when they sent none.
func timeOf(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime()
	return &t
}

// nameOr is the team's name, or its id when the team is gone (as v2.7).
func nameOr(names map[string]string, id string) string {
	if n := names[id]; n != "" {
		return n
	}
	return id
}
