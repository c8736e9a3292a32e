package team

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

func TestSetRoleRules(t *testing.T) {
	h := newHarness(t)
	admin := h.person("user_admin", "alpha", "ADMIN")
	mgr := h.person("user_mgr", "alpha", "MANAGER")
	dev := h.person("user_dev", "alpha", "DEVELOPER")
	other := h.person("user_other", "beta", "ADMIN")
	h.person("user_mgr2", "alpha", "MANAGER")
	root := h.globalAdmin("user_root")

	set := func(ctx context.Context, user, team, role string) error {
		_, err := h.srv.SetUserTeamRole(ctx, &teamv1.SetUserTeamRoleRequest{UserId: user, TeamId: team, Role: role})
		return err
	}
	add := func(ctx context.Context, user, team, role string) error {
		_, err := h.srv.AddUserToTeam(ctx, &teamv1.AddUserToTeamRequest{UserId: user, TeamId: team, Role: role})
		return err
	}
	remove := func(ctx context.Context, user, team string) error {
		_, err := h.srv.RemoveUserFromTeam(ctx, &teamv1.RemoveUserFromTeamRequest{UserId: user, TeamId: team})
		return err
	}

	before := h.snapshot()
	refused := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"unknown role", set(admin, "user_new", "alpha", "OWNER"), codes.InvalidArgument},
		{"lower-case role", add(admin, "user_new", "alpha", "admin"), codes.InvalidArgument},
		{"bad team id", set(admin, "user_new", "Alpha Team", "VIEWER"), codes.InvalidArgument},
		{"bad user id", set(admin, "user/../x", "alpha", "VIEWER"), codes.InvalidArgument},
		{"empty user id", add(admin, "", "alpha", "VIEWER"), codes.InvalidArgument},
		{"missing team (global)", add(root, "user_new", "ghost", "VIEWER"), codes.NotFound},
		{"missing team (not member)", add(admin, "user_new", "ghost", "VIEWER"), codes.PermissionDenied},
		{"developer manages", add(dev, "user_new", "alpha", "VIEWER"), codes.PermissionDenied},
		{"other team's admin (no claim)", add(other, "user_new", "alpha", "VIEWER"), codes.PermissionDenied},
		{"manager grants MANAGER", add(mgr, "user_new", "alpha", "MANAGER"), codes.PermissionDenied},
		{"manager grants ADMIN", set(mgr, "user_new", "alpha", "ADMIN"), codes.PermissionDenied},
		{"manager edits a MANAGER", set(mgr, "user_mgr2", "alpha", "VIEWER"), codes.PermissionDenied},
		{"manager removes a MANAGER", remove(mgr, "user_mgr2", "alpha"), codes.PermissionDenied},
		{"last admin demotes self", set(admin, "user_admin", "alpha", "MANAGER"), codes.FailedPrecondition},
		{"last admin removed", remove(root, "user_admin", "alpha"), codes.FailedPrecondition},
		{"remove non-member", remove(admin, "user_new", "alpha"), codes.NotFound},
		{"service", add(h.service(), "user_new", "alpha", "VIEWER"), codes.PermissionDenied},
	}
	for _, c := range refused {
		if code(c.err) != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	if after := h.snapshot(); after != before {
		t.Fatalf("refused changes changed the database:\n%s\n%s", before, after)
	}
	if m := msg(set(mgr, "user_new", "alpha", "ADMIN")); m != "MANAGER cannot assign ADMIN or MANAGER roles" {
		t.Errorf("message %q", m)
	}

	// Upsert semantics: add, then set on the same user, then add again.
	for _, step := range []struct {
		do   func() error
		want string
	}{
		{func() error { return add(mgr, "user_new", "alpha", "DEVELOPER") }, "DEVELOPER"},
		{func() error { return set(mgr, "user_new", "alpha", "VIEWER") }, "VIEWER"},
		{func() error { return add(admin, "user_new", "alpha", "MANAGER") }, "MANAGER"},
		{func() error { return set(admin, "user_new", "alpha", "MANAGER") }, "MANAGER"}, // no-op
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		if r, _ := membership(h.ctx, h.pool, "user_new", "alpha"); string(r) != step.want {
			t.Errorf("role %q, want %q", r, step.want)
		}
	}
	// Three changes: three audit events and three mirror messages (the no-op writes nothing).
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit' AND payload->>'entityType' = 'membership'`); n != 3 {
		t.Errorf("membership audit events %d, want 3", n)
	}
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'clerk_roles' AND key = 'user_new'`); n != 3 {
		t.Errorf("mirror messages %d, want 3", n)
	}

	// With a second ADMIN, the first may step down; then nobody removes the last.
	if err := set(admin, "user_new", "alpha", "ADMIN"); err != nil {
		t.Fatal(err)
	}
	if err := set(admin, "user_admin", "alpha", "VIEWER"); err != nil {
		t.Fatalf("demote with another ADMIN: %v", err)
	}
	newAdmin := h.as("user_new")
	if err := remove(newAdmin, "user_new", "alpha"); code(err) != codes.FailedPrecondition {
		t.Errorf("last admin removes self: %v", err)
	}
	if err := remove(h.as("user_mgr"), "user_dev", "alpha"); err != nil {
		t.Errorf("manager removes a developer: %v", err)
	}
}

func TestRolesReachClerk(t *testing.T) {
	h := newHarness(t)
	id := h.clerk.AddUser(authtest.FakeUser{ID: "user_target", Email: "t@example.com",
		PublicMetadata: map[string]any{"tokenManager:teamRoles": map[string]any{"stale-team": "ADMIN"}, "theme": "dark"}})
	root := h.globalAdmin("user_root")
	h.person("user_x", "alpha", "ADMIN", "beta", "ADMIN")
	h.runMirror()

	if _, err := h.srv.AddUserToTeam(root, &teamv1.AddUserToTeamRequest{UserId: id, TeamId: "alpha", Role: "MANAGER"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.AddUserToTeam(root, &teamv1.AddUserToTeamRequest{UserId: id, TeamId: "beta", Role: "VIEWER"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"alpha": "MANAGER", "beta": "VIEWER"}
	h.eventually("roles in Clerk", func() bool {
		u, _ := h.clerk.User(id)
		return reflect.DeepEqual(u.PublicMetadata["tokenManager:teamRoles"], want)
	})
	if _, err := h.srv.RemoveUserFromTeam(root, &teamv1.RemoveUserFromTeamRequest{UserId: id, TeamId: "beta"}); err != nil {
		t.Fatal(err)
	}
	h.exec(`INSERT INTO team.global_roles (user_id, role) VALUES ($1, 'ADMIN')`, id)
	h.exec(`SELECT pg_notify('team_outbox', '')`)
	if err := mirror(h.ctx, h.pool, id); err != nil {
		t.Fatal(err)
	}
	h.eventually("removal and global role in Clerk", func() bool {
		u, _ := h.clerk.User(id)
		return reflect.DeepEqual(u.PublicMetadata["tokenManager:teamRoles"], map[string]any{"alpha": "MANAGER"}) &&
			u.PublicMetadata["tokenManager:globalRole"] == "ADMIN"
	})
	u, _ := h.clerk.User(id)
	if u.PublicMetadata["theme"] != "dark" {
		t.Errorf("other metadata lost: %v", u.PublicMetadata)
	}
	// A user Clerk does not know is skipped, not retried forever.
	if _, err := h.srv.AddUserToTeam(root, &teamv1.AddUserToTeamRequest{UserId: "user_unknown", TeamId: "alpha", Role: "VIEWER"}); err != nil {
		t.Fatal(err)
	}
	h.eventually("outbox drained", func() bool {
		return h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'clerk_roles'`) == 0
	})
}

func TestListUsersPagesThroughAll(t *testing.T) {
	h := newHarness(t)
	const n = 250 // v2.7 stopped at 100
	for i := range n {
		h.clerk.AddUser(authtest.FakeUser{ID: fmt.Sprintf("user_%03d", i), Email: fmt.Sprintf("u%03d@example.com", i), FirstName: "U",
			PublicMetadata: map[string]any{"tokenManager:teamRoles": map[string]any{"fake-team": "ADMIN"}, "tokenManager:globalRole": "ADMIN"}})
	}
	mgr := h.person("user_007", "alpha", "MANAGER")
	h.person("user_100", "alpha", "DEVELOPER", "beta", "ADMIN")
	h.exec(`INSERT INTO team.global_roles (user_id, role) VALUES ('user_042', 'ADMIN')`)
	resp, err := h.srv.ListUsers(h.globalAdmin("user_root"), &teamv1.ListUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetUsers()) != n {
		t.Fatalf("%d users, want %d", len(resp.GetUsers()), n)
	}
	seen := map[string]bool{}
	for _, u := range resp.GetUsers() {
		seen[u.GetId()] = true
		meta := u.GetPublicMetadata().AsMap()
		roles := meta["tokenManager:teamRoles"].(map[string]any)
		switch u.GetId() {
		case "user_007":
			if !reflect.DeepEqual(roles, map[string]any{"alpha": "MANAGER"}) || meta["tokenManager:globalRole"] != nil {
				t.Errorf("user_007 metadata %v", meta)
			}
		case "user_100":
			if !reflect.DeepEqual(roles, map[string]any{"alpha": "DEVELOPER", "beta": "ADMIN"}) {
				t.Errorf("user_100 metadata %v", meta)
			}
		case "user_042":
			if len(roles) != 0 || meta["tokenManager:globalRole"] != "ADMIN" {
				t.Errorf("user_042 metadata %v", meta)
			}
		default:
			// PostgreSQL is the truth: Clerk's stale roles are not shown.
			if len(roles) != 0 || meta["tokenManager:globalRole"] != nil {
				t.Errorf("%s metadata %v", u.GetId(), meta)
			}
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct users", len(seen))
	}
	if c := h.count(`SELECT count(*) FROM team.users`); c != n {
		t.Errorf("users cache holds %d", c)
	}
	// A team MANAGER sees only the people of the teams they manage, and only
	// their roles there: not beta's ADMIN, not who is a global ADMIN.
	resp, err = h.srv.ListUsers(mgr, &teamv1.ListUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, u := range resp.GetUsers() {
		meta := u.GetPublicMetadata().AsMap()
		got[u.GetId()] = meta["tokenManager:teamRoles"]
		if meta["tokenManager:globalRole"] != nil {
			t.Errorf("%s: global role shown to a team MANAGER", u.GetId())
		}
	}
	if want := map[string]any{"user_007": map[string]any{"alpha": "MANAGER"}, "user_100": map[string]any{"alpha": "DEVELOPER"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("MANAGER of alpha sees %v, want %v", got, want)
	}
	if _, err := h.srv.ListUsers(h.person("user_v", "alpha", "DEVELOPER"), &teamv1.ListUsersRequest{}); code(err) != codes.PermissionDenied {
		t.Errorf("developer lists users: %v", err)
	}
	h.clerk.SetDown(true)
	if _, err := h.srv.ListUsers(mgr, &teamv1.ListUsersRequest{}); code(err) != codes.Unavailable || strings.Contains(msg(err), "503") {
		t.Errorf("Clerk down: %v", err)
	}
}
