package team

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
)

func TestInvitations(t *testing.T) {
	h := newHarness(t)
	admin := h.person("user_admin", "alpha", "ADMIN")
	mgr := h.person("user_mgr", "alpha", "MANAGER", "beta", "ADMIN")
	h.person("user_b", "beta", "VIEWER")
	root := h.globalAdmin("user_root")
	h.clerk.AddUser(authtest.FakeUser{ID: "user_existing", Email: "taken@example.com"})

	invite := func(ctx context.Context, email string, roles map[string]string) (*teamv1.CreateInvitationResponse, error) {
		return h.srv.CreateInvitation(ctx, &teamv1.CreateInvitationRequest{Email: email, TeamRoles: roles})
	}
	before := h.snapshot()
	clerkBefore := len(h.clerk.Invitations())
	refused := []struct {
		name string
		ctx  context.Context
		mail string
		tr   map[string]string
		want codes.Code
	}{
		{"no at", admin, "not-an-email", nil, codes.InvalidArgument},
		{"display name", admin, "Joe <joe@example.com>", nil, codes.InvalidArgument},
		{"spaces", admin, " joe@example.com", nil, codes.InvalidArgument},
		{"no domain dot", admin, "joe@localhost", nil, codes.InvalidArgument},
		{"too long", admin, strings.Repeat("a", 250) + "@example.com", nil, codes.InvalidArgument},
		{"unknown role", admin, "n@example.com", map[string]string{"alpha": "OWNER"}, codes.InvalidArgument},
		{"unknown team", root, "n@example.com", map[string]string{"ghost": "VIEWER"}, codes.InvalidArgument},
		// Not "does not exist" to whom it is not a team of theirs: that
		// would tell which team ids exist.
		{"unknown team, asked by a team ADMIN", admin, "n@example.com", map[string]string{"ghost": "VIEWER"}, codes.PermissionDenied},
		{"bad team id", admin, "n@example.com", map[string]string{"Bad Team": "VIEWER"}, codes.InvalidArgument},
		{"team the inviter does not administer", admin, "n@example.com", map[string]string{"core-team": "ADMIN"}, codes.PermissionDenied},
		{"manager in alpha grants MANAGER there", mgr, "n@example.com", map[string]string{"alpha": "MANAGER"}, codes.PermissionDenied},
		{"viewer invites", h.as("user_b"), "n@example.com", nil, codes.PermissionDenied},
		{"existing user", admin, "taken@example.com", map[string]string{"alpha": "VIEWER"}, codes.AlreadyExists},
	}
	for _, c := range refused {
		if _, err := invite(c.ctx, c.mail, c.tr); code(err) != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if h.snapshot() != before || len(h.clerk.Invitations()) != clerkBefore {
		t.Fatal("refused invitations changed something")
	}

	resp, err := invite(admin, "new@example.com", map[string]string{"alpha": "DEVELOPER"})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetSuccess() || resp.GetStatus() != "pending" || !strings.HasPrefix(resp.GetInvitationId(), "inv_") || resp.GetEmail() != "new@example.com" {
		t.Errorf("response %v", resp)
	}
	invs := h.clerk.Invitations()
	meta := invs[len(invs)-1].PublicMetadata
	if !reflect.DeepEqual(meta["tokenManager:teamRoles"], map[string]any{"alpha": "DEVELOPER"}) || meta["tokenManager:invitedBy"] != "user_admin" ||
		!strings.HasSuffix(meta["tokenManager:invitedAt"].(string), "Z") {
		t.Errorf("Clerk invitation metadata %v", meta)
	}
	if _, err := invite(admin, "new@example.com", nil); code(err) != codes.AlreadyExists {
		t.Errorf("duplicate pending invitation: %v", err)
	}

	// Listing is for global ADMINs.
	if _, err := h.srv.ListInvitations(admin, &teamv1.ListInvitationsRequest{}); code(err) != codes.PermissionDenied {
		t.Errorf("team admin lists invitations: %v", err)
	}
	list, err := h.srv.ListInvitations(root, &teamv1.ListInvitationsRequest{})
	if err != nil || len(list.GetInvitations()) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	if got := list.GetInvitations()[0]; got.GetInvitedBy() != "user_admin" || got.GetTeamRoles()["alpha"] != "DEVELOPER" || got.GetCreatedAt() == 0 {
		t.Errorf("listed %v", got)
	}

	// The invitee signs up: roles apply when they first appear.
	userID, _ := h.clerk.AcceptInvitation(resp.GetInvitationId())
	p, err := h.srv.Resolver().ResolveUser(h.ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	if p.RoleIn("alpha") != auth.RoleDeveloper || p.Email != "new@example.com" {
		t.Errorf("invitee principal %+v", p)
	}
	if n := h.count(`SELECT count(*) FROM team.invitations WHERE applied_to = $1`, userID); n != 1 {
		t.Error("invitation not marked applied")
	}
	// Accepting is recorded in the trail of the team it grants a role in.
	if got := h.auditEvents("invitation", resp.GetInvitationId()); len(got) != 2 || got[0].Action != "accept" || got[0].Team != "alpha" ||
		!reflect.DeepEqual(got[0].Details, map[string]any{"name": "new@example.com", "user_id": userID, "team_id": "alpha", "team_name": "alpha",
			"team_roles": map[string]any{"alpha": "DEVELOPER"}, "team_count": float64(1), "updated_by": "system", "updated_by_email": "system"}) {
		t.Errorf("accept events %v", got)
	}

	// Revoke: the inviter their own, a global ADMIN any; others not.
	second, err := invite(mgr, "second@example.com", map[string]string{"beta": "VIEWER"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.RevokeInvitation(admin, &teamv1.RevokeInvitationRequest{InvitationId: second.GetInvitationId()}); code(err) != codes.PermissionDenied {
		t.Errorf("another admin revokes: %v", err)
	}
	if _, err := h.srv.RevokeInvitation(mgr, &teamv1.RevokeInvitationRequest{InvitationId: second.GetInvitationId()}); err != nil {
		t.Errorf("inviter revokes: %v", err)
	}
	if _, err := h.srv.RevokeInvitation(root, &teamv1.RevokeInvitationRequest{InvitationId: "inv_nope"}); code(err) != codes.NotFound {
		t.Errorf("unknown invitation: %v", err)
	}
	if _, err := h.srv.RevokeInvitation(root, &teamv1.RevokeInvitationRequest{InvitationId: "inv/../x"}); code(err) != codes.InvalidArgument {
		t.Errorf("bad id: %v", err)
	}
	// A revoked invitation's roles never apply.
	h.clerk.AddUser(authtest.FakeUser{ID: "user_second", Email: "second@example.com"})
	if p, _ := h.srv.Resolver().ResolveUser(h.ctx, "user_second"); len(p.TeamRoles) != 0 {
		t.Errorf("revoked invitation applied: %+v", p)
	}
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit' AND payload->>'entityType' = 'invitation'`); n != 4 {
		t.Errorf("invitation audit events %d, want 4 (create, accept, create, revoke)", n)
	}
}

// auditEvent is an audit event as the team service enqueued it.
type auditEvent struct {
	Action, Team string
	Details      map[string]any
}

// auditEvents returns the audit events about one entity, by team.
func (h *harness) auditEvents(entityType, entityID string) []auditEvent {
	h.t.Helper()
	rows, err := h.pool.Query(h.ctx, `SELECT payload->>'action', coalesce(payload->>'teamId', ''), coalesce(payload->'details', '{}')
		FROM team.outbox WHERE topic = 'audit' AND payload->>'entityType' = $1 AND payload->>'entityId' = $2
		ORDER BY payload->>'action', payload->>'teamId'`, entityType, entityID)
	if err != nil {
		h.t.Fatal(err)
	}
	evs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[auditEvent])
	if err != nil {
		h.t.Fatal(err)
	}
	return evs
}

// An invitation is recorded once per team it names, in that team's trail
// with only that team's role, so each team's ADMINs see the invitations
// into their team and nothing of the others; revoking it likewise, with
// its e-mail and roles. One naming no team is one team-less event.
func TestInvitationAuditPerTeam(t *testing.T) {
	h := newHarness(t)
	mgr := h.person("user_mgr", "alpha", "MANAGER", "beta", "ADMIN")
	alphaAdmin := h.person("user_alpha_admin", "alpha", "ADMIN")
	root := h.globalAdmin("user_root")

	inv, err := h.srv.CreateInvitation(mgr, &teamv1.CreateInvitationRequest{Email: "two@example.com",
		TeamRoles: map[string]string{"alpha": "VIEWER", "beta": "MANAGER"}})
	if err != nil {
		t.Fatal(err)
	}
	id := inv.GetInvitationId()
	if _, err := h.srv.RevokeInvitation(mgr, &teamv1.RevokeInvitationRequest{InvitationId: id}); err != nil {
		t.Fatal(err)
	}
	want := []auditEvent{}
	for _, action := range []string{"create", "revoke"} {
		// Named by the invitee's e-mail, the actor under the key of its action.
		by := map[string]string{"create": "created_by", "revoke": "deleted_by"}[action]
		want = append(want,
			auditEvent{action, "alpha", map[string]any{"name": "two@example.com", "email": "two@example.com", "team_id": "alpha", "team_name": "alpha",
				"team_roles": map[string]any{"alpha": "VIEWER"}, "team_count": float64(2), by: "user_mgr", by + "_email": "unknown"}},
			auditEvent{action, "beta", map[string]any{"name": "two@example.com", "email": "two@example.com", "team_id": "beta", "team_name": "beta",
				"team_roles": map[string]any{"beta": "MANAGER"}, "team_count": float64(2), by: "user_mgr", by + "_email": "unknown"}})
	}
	got := h.auditEvents("invitation", id)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events\n%v\nwant\n%v", got, want)
	}
	// The trail is read with authz.ReadScope: alpha's ADMIN sees alpha's
	// events and not beta's; a global ADMIN sees them all.
	pa, _ := auth.FromContext(alphaAdmin)
	pr, _ := auth.FromContext(root)
	for _, e := range got {
		if authz.CanRead(pa, e.Team) != (e.Team == "alpha") || !authz.CanRead(pr, e.Team) {
			t.Errorf("read scope of %v is wrong", e)
		}
	}

	none, err := h.srv.CreateInvitation(root, &teamv1.CreateInvitationRequest{Email: "none@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.RevokeInvitation(root, &teamv1.RevokeInvitationRequest{InvitationId: none.GetInvitationId()}); err != nil {
		t.Fatal(err)
	}
	want = []auditEvent{
		{"create", "", map[string]any{"name": "none@example.com", "email": "none@example.com", "team_roles": map[string]any{}, "team_count": float64(0),
			"created_by": "user_root", "created_by_email": "unknown"}},
		{"revoke", "", map[string]any{"name": "none@example.com", "email": "none@example.com", "team_roles": map[string]any{}, "team_count": float64(0),
			"deleted_by": "user_root", "deleted_by_email": "unknown"}},
	}
	if got := h.auditEvents("invitation", none.GetInvitationId()); !reflect.DeepEqual(got, want) {
		t.Errorf("team-less invitation events %v, want %v", got, want)
	}

	// An invitation made in Clerk directly (no row here): its revocation is
	// still recorded, team-less, saying what is not known.
	direct, err := h.srv.CreateInvitation(root, &teamv1.CreateInvitationRequest{Email: "direct@example.com", TeamRoles: map[string]string{"alpha": "VIEWER"}})
	if err != nil {
		t.Fatal(err)
	}
	h.exec(`DELETE FROM team.invitations WHERE id = $1`, direct.GetInvitationId())
	if _, err := h.srv.RevokeInvitation(root, &teamv1.RevokeInvitationRequest{InvitationId: direct.GetInvitationId()}); err != nil {
		t.Fatal(err)
	}
	got = h.auditEvents("invitation", direct.GetInvitationId())
	if len(got) != 2 || got[1].Team != "" || !reflect.DeepEqual(got[1].Details, map[string]any{"name": direct.GetInvitationId(), "untracked": true,
		"team_roles": map[string]any{}, "team_count": float64(0), "deleted_by": "user_root", "deleted_by_email": "unknown"}) {
		t.Errorf("untracked revoke events %v", got)
	}
}

func TestResolveUser(t *testing.T) {
	h := newHarness(t)
	h.clerk.AddUser(authtest.FakeUser{ID: "user_a", Email: "a@example.com", FirstName: "Ann", LastName: "Lee"})
	h.person("user_a", "alpha", "VIEWER")
	p, err := h.srv.Resolver().ResolveUser(h.ctx, "user_a")
	if err != nil || p.Email != "a@example.com" || p.Name != "Ann Lee" || p.RoleIn("alpha") != auth.RoleViewer {
		t.Fatalf("%+v %v", p, err)
	}
	// Cached: no Clerk call while fresh.
	calls := h.clerk.BackendCalls()
	if _, err := h.srv.Resolver().ResolveUser(h.ctx, "user_a"); err != nil || h.clerk.BackendCalls() != calls {
		t.Errorf("second resolve called Clerk (%v)", err)
	}
	// Clerk down never fails a sign-in.
	h.clerk.SetDown(true)
	if p, err := h.srv.Resolver().ResolveUser(h.ctx, "user_b"); err != nil || p.Email != "" {
		t.Errorf("with Clerk down: %+v %v", p, err)
	}
}
