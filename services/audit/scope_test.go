package audit

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
)

// TestCoreTeamSeesOnlyRouteEventsOfNoTeam: of the events of no team,
// core-team's members (who govern routes) see the routes', not those of
// admin keys, global roles, invitations or role imports — a global ADMIN's,
// whose details name any team (an admin key's roles in another team, say).
// That holds for the list, the export, the stats and the overview's feed.
func TestCoreTeamSeesOnlyRouteEventsOfNoTeam(t *testing.T) {
	f := newFixture(t)
	var batch []*auditv1.AuditEvent
	for i, entity := range []string{"route", "admin_key", "global_role", "invitation", "roles", "user"} {
		e := ev("s"+entity, "create", entity, "", map[string]any{"team_roles": map[string]any{"beta": "MANAGER"}})
		e.EntityId = entity
		e.OccurredAt = timestamppb.New(t0.Add(time.Duration(i) * time.Minute))
		batch = append(batch, e)
	}
	f.record(t, batch...)
	entities := func(logs []*auditv1.AuditLog) []string {
		var out []string
		for _, l := range logs {
			out = append(out, l.EntityType)
		}
		return out
	}

	r, err := f.client.ListAuditLogs(as(f.carol), &auditv1.ListAuditLogsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := entities(r.Data); !slices.Equal(got, []string{"route"}) || r.Total != 1 {
		t.Errorf("core-team DEVELOPER sees %v (total %d), want only the route's event", got, r.Total)
	}
	if got := exportIDs(t, f, f.carol, &auditv1.ExportAuditLogsRequest{}); len(got) != 1 {
		t.Errorf("core-team DEVELOPER exports %v, want one event", got)
	}
	st, err := f.client.GetStats(as(f.carol), &auditv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.RecentActivity) != 1 {
		t.Errorf("core-team DEVELOPER's stats show %d events, want 1", len(st.RecentActivity))
	}
	rec, err := f.client.ListRecentEvents(as(f.service), &auditv1.ListRecentEventsRequest{TeamIds: []string{"core-team"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := entities(rec.Events); !slices.Equal(got, []string{"route"}) {
		t.Errorf("overview feed of a core-team member: %v, want only the route's event", got)
	}

	r, err = f.client.ListAuditLogs(as(f.admin), &auditv1.ListAuditLogsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Total != 6 {
		t.Errorf("global ADMIN sees %d events, want 6", r.Total)
	}
}
