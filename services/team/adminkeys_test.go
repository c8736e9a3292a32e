package team

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

func TestAdminKeys(t *testing.T) {
	h := newHarness(t)
	root := h.globalAdmin("user_root")
	admin := h.person("user_admin", "alpha", "ADMIN")

	before := h.snapshot()
	refused := []struct {
		name string
		ctx  context.Context
		req  *teamv1.CreateAdminKeyRequest
		want codes.Code
	}{
		{"team admin", admin, &teamv1.CreateAdminKeyRequest{Name: "ci"}, codes.PermissionDenied},
		{"service", h.service(), &teamv1.CreateAdminKeyRequest{Name: "ci"}, codes.PermissionDenied},
		{"empty name", root, &teamv1.CreateAdminKeyRequest{Name: " "}, codes.InvalidArgument},
		{"long name", root, &teamv1.CreateAdminKeyRequest{Name: strings.Repeat("k", 101)}, codes.InvalidArgument},
		{"bad global role", root, &teamv1.CreateAdminKeyRequest{Name: "ci", GlobalRole: "MANAGER"}, codes.InvalidArgument},
		{"unknown role", root, &teamv1.CreateAdminKeyRequest{Name: "ci", TeamRoles: map[string]string{"alpha": "ROOT"}}, codes.InvalidArgument},
		{"unknown team", root, &teamv1.CreateAdminKeyRequest{Name: "ci", TeamRoles: map[string]string{"ghost": "VIEWER"}}, codes.InvalidArgument},
	}
	for _, c := range refused {
		if _, err := h.srv.CreateAdminKey(c.ctx, c.req); code(err) != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if h.snapshot() != before {
		t.Fatal("refused creates changed the database")
	}

	resp, err := h.srv.CreateAdminKey(root, &teamv1.CreateAdminKeyRequest{Name: "ci", TeamRoles: map[string]string{"alpha": "MANAGER"}})
	if err != nil {
		t.Fatal(err)
	}
	key, k := resp.GetKey(), resp.GetAdminKey()
	if !auth.ParseAdminKey(key) || !strings.HasPrefix(key, k.GetPrefix()) || k.GetTeamRoles()["alpha"] != "MANAGER" || k.GetCreatedBy() != "user_root" {
		t.Fatalf("created %v", resp)
	}
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit' AND payload::text LIKE '%' || $1 || '%'`, key); n != 0 {
		t.Error("the secret is in an audit event")
	}
	p, err := h.srv.Resolver().ResolveAdminKey(h.ctx, auth.HashKey(key))
	if err != nil || p.RoleIn("alpha") != auth.RoleManager || p.ID != k.GetId() {
		t.Fatalf("key principal %+v %v", p, err)
	}

	list, err := h.srv.ListAdminKeys(root, &teamv1.ListAdminKeysRequest{})
	if err != nil || len(list.GetAdminKeys()) != 1 || list.GetAdminKeys()[0].GetLastUsedAt() == nil {
		t.Fatalf("list %v %v", list, err)
	}
	if _, err := h.srv.ListAdminKeys(admin, &teamv1.ListAdminKeysRequest{}); code(err) != codes.PermissionDenied {
		t.Errorf("team admin lists keys: %v", err)
	}

	if _, err := h.srv.RevokeAdminKey(admin, &teamv1.RevokeAdminKeyRequest{Id: k.GetId()}); code(err) != codes.PermissionDenied {
		t.Errorf("team admin revokes: %v", err)
	}
	if _, err := h.srv.RevokeAdminKey(root, &teamv1.RevokeAdminKeyRequest{Id: "ak_nope"}); code(err) != codes.NotFound {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := h.srv.RevokeAdminKey(root, &teamv1.RevokeAdminKeyRequest{Id: "ak nope"}); code(err) != codes.InvalidArgument {
		t.Errorf("bad id: %v", err)
	}
	for range 2 { // idempotent
		if _, err := h.srv.RevokeAdminKey(root, &teamv1.RevokeAdminKeyRequest{Id: k.GetId()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.srv.Resolver().ResolveAdminKey(h.ctx, auth.HashKey(key)); code(err) != codes.NotFound {
		t.Errorf("revoked key resolves: %v", err)
	}
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit' AND payload->>'entityType' = 'admin_key'`); n != 2 {
		t.Errorf("admin key audit events %d, want 2", n)
	}

	// A global-admin key can drive what a global ADMIN can.
	gk, err := h.srv.CreateAdminKey(root, &teamv1.CreateAdminKeyRequest{Name: "ops", GlobalRole: "ADMIN"})
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := h.srv.Resolver().ResolveAdminKey(h.ctx, auth.HashKey(gk.GetKey()))
	if _, err := h.srv.CreateTeam(auth.WithPrincipal(h.ctx, kp), &teamv1.CreateTeamRequest{Id: "by-key", Name: "By key"}); err != nil {
		t.Errorf("global key creates a team: %v", err)
	}
}

func TestImportClerkRoles(t *testing.T) {
	h := newHarness(t)
	h.exec(`INSERT INTO team.teams (id, name) VALUES ('alpha', 'A'), ('beta', 'B')`)
	h.exec(`INSERT INTO team.memberships (user_id, team_id, role) VALUES ('user_1', 'alpha', 'VIEWER')`)
	h.clerk.AddUser(authtest.FakeUser{ID: "user_1", PublicMetadata: map[string]any{
		"tokenManager:teamRoles": map[string]any{"alpha": "ADMIN", "beta": "DEVELOPER", "gone": "ADMIN", "core-team": nil}}})
	h.clerk.AddUser(authtest.FakeUser{ID: "user_2", PublicMetadata: map[string]any{
		"tokenManager:teamRoles": map[string]any{"beta": "OWNER"}, "tokenManager:globalRole": "ADMIN"}})
	h.clerk.AddUser(authtest.FakeUser{ID: "user_3"})

	req := &teamv1.ImportClerkRolesRequest{DryRun: true}
	if _, err := h.srv.ImportClerkRoles(h.person("user_admin", "alpha", "ADMIN"), req); code(err) != codes.PermissionDenied {
		t.Errorf("team admin imports: %v", err)
	}
	before := h.snapshot()
	dry, err := h.srv.ImportClerkRoles(h.service(), req)
	if err != nil {
		t.Fatal(err)
	}
	if h.snapshot() != before {
		t.Error("dry run wrote")
	}
	if dry.GetUsersSeen() != 3 || dry.GetMembershipsImported() != 1 || dry.GetGlobalAdminsImported() != 1 || len(dry.GetSkipped()) != 2 {
		t.Errorf("dry run %v", dry)
	}
	root := h.globalAdmin("user_root")
	res, err := h.srv.ImportClerkRoles(root, &teamv1.ImportClerkRolesRequest{})
	if err != nil || res.GetMembershipsImported() != 1 || res.GetGlobalAdminsImported() != 1 {
		t.Fatalf("import %v %v", res, err)
	}
	// PostgreSQL wins: user_1 stays VIEWER in alpha.
	if r, _ := h.svc.store.Membership(h.ctx, "user_1", "alpha"); r != auth.RoleViewer {
		t.Errorf("import overwrote a role: %s", r)
	}
	if r, _ := h.svc.store.Membership(h.ctx, "user_1", "beta"); r != auth.RoleDeveloper {
		t.Errorf("beta role %q", r)
	}
	again, _ := h.srv.ImportClerkRoles(root, &teamv1.ImportClerkRolesRequest{})
	if again.GetMembershipsImported() != 0 || again.GetGlobalAdminsImported() != 0 {
		t.Errorf("second import %v", again)
	}
}
