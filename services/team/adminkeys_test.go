package team

import (
	"context"
	"reflect"
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
	// The revoke event says which key lost which powers, never its secret.
	evs := h.auditEvents("admin_key", k.GetId())
	if len(evs) != 2 || evs[1].Action != "revoke" || !reflect.DeepEqual(evs[1].Details, map[string]any{
		"name": "ci", "prefix": k.GetPrefix(), "global_role": "", "team_roles": map[string]any{"alpha": "MANAGER"},
		"deleted_by": "user_root", "deleted_by_email": "unknown"}) {
		t.Errorf("revoke event %v", evs)
	}
	if n := h.count(`SELECT count(*) FROM team.outbox WHERE topic = 'audit' AND (payload::text LIKE '%' || $1 || '%' OR payload::text LIKE '%' || $2 || '%')`,
		key, auth.HashKey(key)); n != 0 {
		t.Error("the key or its hash is in an audit event")
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
	// ...and gets no role in it: it governs every team already.
	if n := h.count(`SELECT count(*) FROM team.admin_key_roles WHERE key_id = $1`, kp.ID); n != 0 {
		t.Errorf("global key got %d team roles", n)
	}
	if evs := h.auditEvents("admin_key_role", kp.ID+"@by-key"); len(evs) != 0 {
		t.Errorf("global key role events %v", evs)
	}
}

// A key that is ADMIN of a team (not global) may create a team and is made
// its ADMIN; that grant is in the new team's trail like a user creator's
// membership, and so is its removal when the key deletes the team.
func TestTeamCreatedByTeamAdminKey(t *testing.T) {
	h := newHarness(t)
	root := h.globalAdmin("user_root")
	h.person("user_x", "alpha", "VIEWER") // creates team alpha
	resp, err := h.srv.CreateAdminKey(root, &teamv1.CreateAdminKeyRequest{Name: "team-ci", TeamRoles: map[string]string{"alpha": "ADMIN"}})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := h.srv.Resolver().ResolveAdminKey(h.ctx, auth.HashKey(resp.GetKey()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.CreateTeam(auth.WithPrincipal(h.ctx, kp), &teamv1.CreateTeamRequest{Id: "key-team", Name: "Key team"}); err != nil {
		t.Fatal(err)
	}
	if n := h.count(`SELECT count(*) FROM team.admin_key_roles WHERE key_id = $1 AND team_id = 'key-team' AND role = 'ADMIN'`, kp.ID); n != 1 {
		t.Fatal("creator key is not ADMIN of its team")
	}
	// Named by the key's name, the actor is the key (it has no e-mail).
	want := []auditEvent{{"create", "key-team", map[string]any{"name": "team-ci", "admin_key_id": kp.ID, "team_id": "key-team", "team_name": "Key team",
		"role": "ADMIN", "previous_role": "", "created_by": kp.ID, "created_by_email": "team-ci (admin key)"}}}
	if got := h.auditEvents("admin_key_role", kp.ID+"@key-team"); !reflect.DeepEqual(got, want) {
		t.Errorf("grant events %v, want %v", got, want)
	}
	if got := h.auditEvents("team", "key-team"); len(got) != 1 || got[0].Team != "key-team" {
		t.Errorf("team events %v", got)
	}

	kp, _ = h.srv.Resolver().ResolveAdminKey(h.ctx, auth.HashKey(resp.GetKey())) // now ADMIN of key-team too
	if _, err := h.srv.DeleteTeam(auth.WithPrincipal(h.ctx, kp), &teamv1.DeleteTeamRequest{TeamId: "key-team"}); err != nil {
		t.Fatal(err)
	}
	want = append(want, auditEvent{"delete", "key-team", map[string]any{"name": "team-ci", "admin_key_id": kp.ID, "team_id": "key-team", "team_name": "Key team",
		"previous_role": "ADMIN", "deleted_by": kp.ID, "deleted_by_email": "team-ci (admin key)"}})
	if got := h.auditEvents("admin_key_role", kp.ID+"@key-team"); !reflect.DeepEqual(got, want) {
		t.Errorf("grant events after delete %v, want %v", got, want)
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
	if r, _ := membership(h.ctx, h.pool, "user_1", "alpha"); r != auth.RoleViewer {
		t.Errorf("import overwrote a role: %s", r)
	}
	if r, _ := membership(h.ctx, h.pool, "user_1", "beta"); r != auth.RoleDeveloper {
		t.Errorf("beta role %q", r)
	}
	again, _ := h.srv.ImportClerkRoles(root, &teamv1.ImportClerkRolesRequest{})
	if again.GetMembershipsImported() != 0 || again.GetGlobalAdminsImported() != 0 {
		t.Errorf("second import %v", again)
	}
}
