package team

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

func TestCreateTeam(t *testing.T) {
	h := newHarness(t)
	admin := h.person("user_admin", "alpha", "ADMIN")
	viewer := h.person("user_viewer", "alpha", "VIEWER")

	resp, err := h.srv.CreateTeam(admin, &teamv1.CreateTeamRequest{Id: "backend-team", Name: "Backend Team", Icon: wrapperspb.String("🛠️")})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetTeam()
	if got.GetMemberCount() != 1 || got.GetColor() != "#3b82f6" || got.GetDescription() != "" || got.GetCreatedBy() != "user_admin" || got.GetIcon() != "🛠️" {
		t.Errorf("created %+v", got)
	}
	if r, _ := membership(h.ctx, h.pool, "user_admin", "backend-team"); r != "ADMIN" {
		t.Errorf("creator role %q, want ADMIN", r)
	}
	// The team, and the creator's ADMIN membership.
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit'`); n != 2 {
		t.Errorf("audit events %d, want 2", n)
	}
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit' AND payload->>'entityType' = 'membership'
		AND payload->>'entityId' = 'user_admin@backend-team' AND payload->'details'->>'role' = 'ADMIN'`); n != 1 {
		t.Errorf("creator membership audit events %d, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'clerk_roles' AND key = 'user_admin'`); n != 1 {
		t.Errorf("mirror messages %d, want 1", n)
	}

	before := h.snapshot()
	_, err = h.srv.CreateTeam(admin, &teamv1.CreateTeamRequest{Id: "backend-team", Name: "Again"})
	if code(err) != codes.AlreadyExists || msg(err) != "Team ID 'backend-team' already exists" {
		t.Errorf("duplicate: %v", err)
	}
	bad := []*teamv1.CreateTeamRequest{
		{Id: "", Name: "x"},
		{Id: "has space", Name: "x"},
		{Id: "UPPER", Name: "x"},
		{Id: "-dash-first", Name: "x"},
		{Id: strings.Repeat("a", 51), Name: "x"},
		{Id: "ok", Name: ""},
		{Id: "ok", Name: "   "},
		{Id: "ok", Name: strings.Repeat("n", 101)},
		{Id: "ok", Name: "x", Description: wrapperspb.String(strings.Repeat("d", 501))},
		{Id: "ok", Name: "x", Color: wrapperspb.String("blue")},
		{Id: "ok", Name: "x", Color: wrapperspb.String("#12345")},
		{Id: "ok", Name: "x", Icon: wrapperspb.String(strings.Repeat("i", 11))},
	}
	for _, r := range bad {
		if _, err := h.srv.CreateTeam(admin, r); code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", r, err)
		}
	}
	if _, err := h.srv.CreateTeam(viewer, &teamv1.CreateTeamRequest{Id: "v-team", Name: "V"}); code(err) != codes.PermissionDenied {
		t.Errorf("viewer created a team: %v", err)
	}
	if _, err := h.srv.CreateTeam(h.service(), &teamv1.CreateTeamRequest{Id: "s-team", Name: "S"}); code(err) != codes.PermissionDenied {
		t.Errorf("service created a team: %v", err)
	}
	if after := h.snapshot(); after != before {
		t.Errorf("refused requests changed the database:\n%s\n%s", before, after)
	}
}

func TestTeamReadsAreScoped(t *testing.T) {
	h := newHarness(t)
	alice := h.person("user_alice", "alpha", "VIEWER")
	h.person("user_bob", "beta", "ADMIN")
	global := h.globalAdmin("user_root")

	list, err := h.srv.ListTeams(alice, &teamv1.ListTeamsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetTeams()) != 1 || list.GetTeams()[0].GetId() != "alpha" || list.GetTeams()[0].GetMemberCount() != 1 {
		t.Errorf("alice sees %v", list.GetTeams())
	}
	all, _ := h.srv.ListTeams(global, &teamv1.ListTeamsRequest{})
	if len(all.GetTeams()) != 3 { // alpha, beta, core-team
		t.Errorf("global admin sees %d teams", len(all.GetTeams()))
	}
	if _, err := h.srv.GetTeam(alice, &teamv1.GetTeamRequest{TeamId: "beta"}); code(err) != codes.PermissionDenied {
		t.Errorf("alice read beta: %v", err)
	}
	if _, err := h.srv.ListTeamMembers(alice, &teamv1.ListTeamMembersRequest{TeamId: "beta"}); code(err) != codes.PermissionDenied {
		t.Errorf("alice listed beta's members: %v", err)
	}
	if r, err := h.srv.GetTeam(alice, &teamv1.GetTeamRequest{TeamId: "alpha"}); err != nil || r.GetTeam().GetMemberCount() != 1 {
		t.Errorf("alice reads alpha: %v %v", r, err)
	}
	if _, err := h.srv.GetTeam(global, &teamv1.GetTeamRequest{TeamId: "nope"}); code(err) != codes.NotFound {
		t.Errorf("missing team: %v", err)
	}
	if _, err := h.srv.GetTeam(global, &teamv1.GetTeamRequest{TeamId: "../etc"}); code(err) != codes.InvalidArgument {
		t.Errorf("bad team id: %v", err)
	}
}

func TestUpdateTeam(t *testing.T) {
	h := newHarness(t)
	admin := h.person("user_admin", "alpha", "ADMIN")
	mgr := h.person("user_mgr", "alpha", "MANAGER")
	other := h.person("user_other", "beta", "ADMIN")
	h.exec(`INSERT INTO team.teams (id, name) VALUES ('empty', 'Empty')`)

	before := h.snapshot()
	cases := []struct {
		name string
		ctx  context.Context
		req  *teamv1.UpdateTeamRequest
		want codes.Code
	}{
		{"manager", mgr, &teamv1.UpdateTeamRequest{TeamId: "alpha", Name: wrapperspb.String("x")}, codes.PermissionDenied},
		{"other admin", other, &teamv1.UpdateTeamRequest{TeamId: "alpha", Name: wrapperspb.String("x")}, codes.PermissionDenied},
		{"no claim of empty teams", other, &teamv1.UpdateTeamRequest{TeamId: "empty", Name: wrapperspb.String("x")}, codes.PermissionDenied},
		{"no fields", admin, &teamv1.UpdateTeamRequest{TeamId: "alpha"}, codes.InvalidArgument},
		{"empty name", admin, &teamv1.UpdateTeamRequest{TeamId: "alpha", Name: wrapperspb.String("")}, codes.InvalidArgument},
		{"bad color", admin, &teamv1.UpdateTeamRequest{TeamId: "alpha", Color: wrapperspb.String("#zzzzzz")}, codes.InvalidArgument},
		{"long icon", admin, &teamv1.UpdateTeamRequest{TeamId: "alpha", Icon: wrapperspb.String("0123456789x")}, codes.InvalidArgument},
		{"long description", admin, &teamv1.UpdateTeamRequest{TeamId: "alpha", Description: wrapperspb.String(strings.Repeat("d", 501))}, codes.InvalidArgument},
		{"bad id", admin, &teamv1.UpdateTeamRequest{TeamId: "Alpha", Name: wrapperspb.String("x")}, codes.InvalidArgument},
	}
	for _, c := range cases {
		if _, err := h.srv.UpdateTeam(c.ctx, c.req); code(err) != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if after := h.snapshot(); after != before {
		t.Errorf("refused updates changed the database")
	}
	resp, err := h.srv.UpdateTeam(admin, &teamv1.UpdateTeamRequest{TeamId: "alpha", Description: wrapperspb.String("APIs"), Color: wrapperspb.String("#8B5CF6")})
	if err != nil {
		t.Fatal(err)
	}
	if g := resp.GetTeam(); g.GetName() != "alpha" || g.GetDescription() != "APIs" || g.GetColor() != "#8B5CF6" || g.GetMemberCount() != 2 {
		t.Errorf("updated %+v", g)
	}
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit'`); n != 1 {
		t.Errorf("audit events %d", n)
	}
	if _, err := h.srv.UpdateTeam(h.globalAdmin("user_root"), &teamv1.UpdateTeamRequest{TeamId: "ghost", Name: wrapperspb.String("x")}); code(err) != codes.NotFound {
		t.Errorf("missing team: %v", err)
	}
}

func TestDeleteTeam(t *testing.T) {
	h := newHarness(t)
	admin := h.person("user_admin", "alpha", "ADMIN")
	h.person("user_dev", "alpha", "DEVELOPER")
	root := h.globalAdmin("user_root")
	other := h.person("user_other", "beta", "ADMIN")

	del := func(ctx context.Context, team string) error {
		_, err := h.srv.DeleteTeam(ctx, &teamv1.DeleteTeamRequest{TeamId: team})
		return err
	}
	before := h.snapshot()
	if err := del(other, "alpha"); code(err) != codes.PermissionDenied {
		t.Errorf("other team's admin: %v", err)
	}
	if err := del(admin, "alpha"); code(err) != codes.FailedPrecondition || !strings.Contains(msg(err), "1 members") {
		t.Errorf("team with a member: %v", err)
	}
	if err := del(root, "core-team"); code(err) != codes.FailedPrecondition {
		t.Errorf("core-team: %v", err)
	}
	if err := del(root, "BAD ID"); code(err) != codes.InvalidArgument {
		t.Errorf("bad id: %v", err)
	}
	if err := del(root, "ghost"); code(err) != codes.NotFound {
		t.Errorf("missing: %v", err)
	}
	if after := h.snapshot(); after != before {
		t.Errorf("refused deletes changed the database")
	}
	h.exec(`DELETE FROM team.memberships WHERE user_id = 'user_dev'`)
	before = h.snapshot()

	h.tokens.set("alpha", 2, false)
	if err := del(admin, "alpha"); code(err) != codes.FailedPrecondition || !strings.Contains(msg(err), "2 tokens") {
		t.Errorf("team with tokens: %v", err)
	}
	// A token service that cannot answer (not built yet, or down): refuse.
	h.tokens.set("alpha", 0, true)
	if err := del(admin, "alpha"); code(err) != codes.Unavailable || msg(err) != "cannot verify the team has no tokens" {
		t.Errorf("token service unimplemented: %v", err)
	}
	if after := h.snapshot(); after != before {
		t.Errorf("refused deletes changed the database")
	}

	// Refused deletes never retired the id in the token service.
	if h.tokens.retired["alpha"] {
		t.Errorf("a refused delete retired the team's tokens side")
	}

	// The last ADMIN may delete their own otherwise empty team.
	h.tokens.set("alpha", 0, false)
	if err := del(admin, "alpha"); err != nil {
		t.Fatal(err)
	}
	if n := h.count(`SELECT count(*) FROM team.teams WHERE id = 'alpha'`); n != 0 {
		t.Error("team still there")
	}
	if !h.tokens.retired["alpha"] {
		t.Error("the token service was not told to retire the team")
	}
	// Nobody, not even a global ADMIN, gets the deleted id (and what it left
	// behind) again.
	_, err := h.srv.CreateTeam(root, &teamv1.CreateTeamRequest{Id: "alpha", Name: "Alpha again"})
	if code(err) != codes.AlreadyExists || !strings.Contains(msg(err), "deleted team") {
		t.Errorf("re-create a deleted id: %v", err)
	}
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit' AND payload->>'action' = 'delete' AND payload->>'entityType' = 'team'`); n != 1 {
		t.Errorf("audit events %d", n)
	}
	// The deleting ADMIN's own membership went with the team.
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit' AND payload->>'action' = 'delete' AND payload->>'entityType' = 'membership'
		AND payload->>'entityId' = 'user_admin@alpha'`); n != 1 {
		t.Errorf("membership audit events %d, want 1", n)
	}
}

func TestListTeamMembers(t *testing.T) {
	h := newHarness(t)
	last := int64(1762585000000)
	h.clerk.AddUser(authtest.FakeUser{ID: "user_joey", Email: "joey@example.com", FirstName: "Joey", LastName: "Luo", ImageURL: "https://img.example/j.png", LastSignInAt: last})
	viewer := h.person("user_joey", "alpha", "VIEWER")
	h.person("user_ghost", "alpha", "ADMIN") // not in Clerk
	resp, err := h.srv.ListTeamMembers(viewer, &teamv1.ListTeamMembersRequest{TeamId: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	m := resp.GetMembers()
	if len(m) != 2 || m[0].GetId() != "user_ghost" || m[0].GetRole() != "ADMIN" || m[0].GetEmail() != nil {
		t.Fatalf("members %v", m)
	}
	if j := m[1]; j.GetEmail().GetValue() != "joey@example.com" || j.GetFirstName().GetValue() != "Joey" ||
		j.GetLastSignInAt().GetValue() != last || j.GetImageUrl().GetValue() != "https://img.example/j.png" || j.GetRole() != "VIEWER" {
		t.Errorf("joey %v", j)
	}
	// Clerk down: the list still answers from the cache.
	h.clerk.SetDown(true)
	h.exec(`UPDATE team.users SET refreshed_at = 'epoch'`)
	resp, err = h.srv.ListTeamMembers(viewer, &teamv1.ListTeamMembersRequest{TeamId: "alpha"})
	if err != nil || resp.GetMembers()[1].GetEmail().GetValue() != "joey@example.com" {
		t.Errorf("with Clerk down: %v %v", resp, err)
	}
}
