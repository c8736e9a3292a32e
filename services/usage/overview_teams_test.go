package usage

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
)

// teamCounter is the team client of the fakes with CountTeams answered here, so that a test can
// set a total that differs from every other count in the fixture.
type teamCounter struct {
	teamv1.TeamServiceClient
	total int64
	err   error
	calls atomic.Int32
}

func (c *teamCounter) CountTeams(context.Context, *teamv1.CountTeamsRequest, ...grpc.CallOption) (*teamv1.CountTeamsResponse, error) {
	c.calls.Add(1)
	if c.err != nil {
		return nil, c.err
	}
	return &teamv1.CountTeamsResponse{Total: c.total}, nil
}

// withTeams rebuilds h.svc with teams as its team client.
func withTeams(h *harness, teams teamv1.TeamServiceClient) {
	h.svc = NewService(ServiceDeps{
		Pool: h.pool, Log: testLog(), Ingester: h.ing, Token: tokenv1.NewTokenServiceClient(h.conn),
		Team: teams, Audit: auditv1.NewAuditServiceClient(h.conn), Retention: 90 * 24 * time.Hour,
	})
}

// A global admin's total_teams is every team, including the ones without tokens, which the
// token service's per-team counts cannot see.
func TestOverviewTotalTeamsCountsEveryTeam(t *testing.T) {
	h := newHarness(t)
	teams := &teamCounter{TeamServiceClient: teamv1.NewTeamServiceClient(h.conn), total: 42}
	withTeams(h, teams)

	o, err := h.overview(as(globalAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if o.Overview.TotalTeams != 42 {
		t.Errorf("total_teams %d, want 42 (CountTeams), not the %d teams holding tokens", o.Overview.TotalTeams, 6)
	}
	if len(o.Unavailable) != 0 {
		t.Errorf("unavailable %v, want none", o.Unavailable)
	}
	// Team names still come from LookupTeams.
	if len(o.TokensByTeam) == 0 || o.TokensByTeam[0].TeamName != "Backend Team" {
		t.Errorf("tokens_by_team %v", o.TokensByTeam)
	}

	// Anyone else sees the teams they have a role in, without asking the team service.
	calls := teams.calls.Load()
	o, err = h.overview(as(backendDev))
	if err != nil {
		t.Fatal(err)
	}
	if o.Overview.TotalTeams != 1 || teams.calls.Load() != calls {
		t.Errorf("scoped total_teams %d (CountTeams calls %d → %d), want 1 and no call", o.Overview.TotalTeams, calls, teams.calls.Load())
	}
	o, err = h.overview(as(nobody))
	if err != nil || o.Overview.TotalTeams != 0 {
		t.Errorf("caller without teams: total_teams %d, %v", o.GetOverview().GetTotalTeams(), err)
	}
}

// The default fakes: the real count (5 named teams) wins over the 6 team ids holding tokens, one
// of them a deleted team's, and ListTeams (which refuses services) is not used.
func TestOverviewTotalTeamsFromTeamService(t *testing.T) {
	h := newHarness(t)
	o, err := h.overview(as(globalAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if o.Overview.TotalTeams != int64(len(teamNamesForTest)) || len(o.Unavailable) != 0 {
		t.Errorf("total_teams %d unavailable %v, want %d and none", o.Overview.TotalTeams, o.Unavailable, len(teamNamesForTest))
	}
}

// When the team service cannot count (down, or an older one without CountTeams), the total
// falls back to the teams holding tokens, a lower bound, and "team" says it is incomplete.
func TestOverviewTotalTeamsFallback(t *testing.T) {
	for _, code := range []codes.Code{codes.Unavailable, codes.Unimplemented} {
		t.Run(code.String(), func(t *testing.T) {
			h := newHarness(t)
			withTeams(h, &teamCounter{TeamServiceClient: teamv1.NewTeamServiceClient(h.conn), err: status.Error(code, "no")})
			o, err := h.overview(as(globalAdmin))
			if err != nil {
				t.Fatal(err)
			}
			if o.Overview.TotalTeams != 6 || !slices.Equal(o.Unavailable, []string{"team"}) {
				t.Errorf("total_teams %d unavailable %v, want 6 (teams holding tokens) and [team]", o.Overview.TotalTeams, o.Unavailable)
			}
		})
	}
}
