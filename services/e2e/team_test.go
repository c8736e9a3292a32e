package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

// teamReq sends a request with a raw JSON body (or none when body is "").
func (s *stack) teamReq(t *testing.T, method, path, bearer, body string) response {
	t.Helper()
	return send(t, method, s.url+path, bearer, body, nil)
}

// teamMust calls and requires the status.
func (s *stack) teamMust(t *testing.T, status int, method, path, bearer, body string) response {
	t.Helper()
	r := s.teamReq(t, method, path, bearer, body)
	if r.Status != status {
		t.Fatalf("%s %s: %d %s, want %d", method, path, r.Status, r.Body, status)
	}
	return r
}

// teamSnapshot is the team schema's state that refused requests must not
// change.
func (s *stack) teamSnapshot(t *testing.T) string {
	t.Helper()
	var out string
	s.withDB(t, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT concat_ws('|',
		(SELECT string_agg(id || name || description || color || icon || updated_at::text, ',' ORDER BY id) FROM team.teams),
		(SELECT string_agg(user_id || team_id || role, ',' ORDER BY user_id, team_id) FROM team.memberships),
		(SELECT string_agg(id || coalesce(revoked_at::text, ''), ',' ORDER BY id) FROM team.admin_keys),
		(SELECT string_agg(key_id || team_id || role, ',' ORDER BY key_id, team_id) FROM team.admin_key_roles),
		(SELECT string_agg(id || coalesce(revoked_at::text, ''), ',' ORDER BY id) FROM team.invitations))`).Scan(&out)
	})
	return out
}

// seedPeople adds the e2e's people to the fake Clerk, with fixed times so
// that responses are stable.
func seedPeople(s *stack) {
	for _, u := range []authtest.FakeUser{
		{ID: "user_joey", Email: "joey@example.com", FirstName: "Joey", LastName: "Luo", ImageURL: "https://img.example/joey.png", CreatedAt: 1761900000000, LastSignInAt: 1762585000000},
		{ID: "user_mia", Email: "mia@example.com", FirstName: "Mia", CreatedAt: 1761800000000,
			PublicMetadata: map[string]any{"tokenManager:teamRoles": map[string]any{"stale-team": "ADMIN"}, "theme": "dark"}},
		{ID: "user_noah", Email: "noah@example.com", CreatedAt: 1761700000000},
		{ID: "user_root", Email: "root@example.com", FirstName: "Root", CreatedAt: 1761600000000},
	} {
		s.clerk.AddUser(u)
	}
}

func TestTeamREST(t *testing.T) {
	s := startStack(t)
	seedPeople(s)
	// user_root is a global ADMIN (no API grants that: it is set in
	// PostgreSQL, or imported from Clerk once).
	s.exec(t, `INSERT INTO team.global_roles (user_id, role) VALUES ('user_root', 'ADMIN')`)
	key := s.clerk.SessionToken(t, "user_root")
	joey := func() string { return s.clerk.SessionToken(t, "user_joey") }
	times := []string{"created_at", "updated_at"}

	// A global ADMIN creates a team and names its first ADMIN.
	s.teamMust(t, 200, "POST", "/api/teams", key, `{"id":"backend-team","name":"Backend Team","description":"APIs","icon":"🛠️"}`)
	r := s.teamMust(t, 200, "POST", "/api/users/user_joey/team-membership", key, `{"team_id":"backend-team","role":"ADMIN"}`)
	assertGolden(t, "team_add_membership.json", r.Body, nil)

	// That ADMIN creates a team of their own and becomes its ADMIN.
	r = s.teamMust(t, 200, "POST", "/api/teams", joey(), `{"id":"data-team","name":"Data Team","description":"","color":"#10b981","icon":"👥"}`)
	assertGolden(t, "team_create.json", r.Body, times)

	// Reads are scoped: joey sees his two teams, not core-team.
	r = s.teamMust(t, 200, "GET", "/api/teams", joey(), "")
	assertGolden(t, "teams_list.json", r.Body, times)
	r = s.teamMust(t, 200, "GET", "/api/teams/backend-team", joey(), "")
	assertGolden(t, "team_get.json", r.Body, times)
	if r := s.teamReq(t, "GET", "/api/teams/core-team", joey(), ""); r.Status != 403 {
		t.Errorf("joey reads core-team: %d", r.Status)
	}

	r = s.teamMust(t, 200, "PUT", "/api/teams/backend-team", joey(), `{"description":"Public APIs","color":"#8b5cf6"}`)
	assertGolden(t, "team_update.json", r.Body, times)

	// The creator (root) became an ADMIN too; joey, an ADMIN, may remove
	// another ADMIN while one remains.
	s.teamMust(t, 200, "DELETE", "/api/users/user_root/team-membership/backend-team", joey(), "")

	// Roles: upsert, mirrored to Clerk.
	r = s.teamMust(t, 200, "PUT", "/api/users/user_mia/team-role", joey(), `{"team_id":"backend-team","role":"DEVELOPER"}`)
	assertGolden(t, "team_set_role.json", r.Body, nil)
	s.teamMust(t, 200, "POST", "/api/users/user_noah/team-membership", joey(), `{"team_id":"backend-team","role":"VIEWER"}`)
	r = s.teamMust(t, 200, "GET", "/api/teams/backend-team/members", joey(), "")
	assertGolden(t, "team_members.json", r.Body, nil)
	r = s.teamMust(t, 200, "GET", "/api/users", joey(), "")
	assertGolden(t, "users_list.json", r.Body, nil)

	deadline := time.Now().Add(10 * time.Second)
	for {
		u, _ := s.clerk.User("user_mia")
		if reflect.DeepEqual(u.PublicMetadata["tokenManager:teamRoles"], map[string]any{"backend-team": "DEVELOPER"}) && u.PublicMetadata["theme"] == "dark" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("role change did not reach Clerk: %v", u.PublicMetadata)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r = s.teamMust(t, 200, "DELETE", "/api/users/user_noah/team-membership/backend-team", joey(), "")
	assertGolden(t, "team_remove_membership.json", r.Body, nil)
	// The last ADMIN cannot leave.
	if r := s.teamReq(t, "DELETE", "/api/users/user_joey/team-membership/backend-team", joey(), ""); r.Status != 400 || !strings.Contains(detail(t, r), "last ADMIN") {
		t.Errorf("last admin removed: %d %s", r.Status, r.Body)
	}

	// Invitations through Clerk.
	r = s.teamMust(t, 200, "POST", "/api/invitations", joey(), `{"email":"new@example.com","team_roles":{"backend-team":"VIEWER"}}`)
	assertGolden(t, "invitation_create.json", r.Body, []string{"invitation_id"})
	var inv struct {
		InvitationID string `json:"invitation_id"`
	}
	_ = json.Unmarshal(r.Body, &inv)
	r = s.teamMust(t, 200, "GET", "/api/invitations", key, "")
	assertGolden(t, "invitations_list.json", r.Body, []string{"id", "created_at", "invited_at"})
	if r := s.teamReq(t, "GET", "/api/invitations", joey(), ""); r.Status != 403 {
		t.Errorf("team admin lists invitations: %d", r.Status)
	}
	r = s.teamMust(t, 200, "DELETE", "/api/invitations/"+inv.InvitationID, joey(), "")
	assertGolden(t, "invitation_revoke.json", r.Body, []string{"invitation_id"})
	// A second invitation, accepted: the roles apply on first sight.
	r = s.teamMust(t, 200, "POST", "/api/invitations", joey(), `{"email":"ava@example.com","team_roles":{"data-team":"DEVELOPER"}}`)
	_ = json.Unmarshal(r.Body, &inv)
	ava, _ := s.clerk.AcceptInvitation(inv.InvitationID)
	r = s.teamMust(t, 200, "GET", "/api/teams", s.clerk.SessionToken(t, ava), "")
	if !strings.Contains(string(r.Body), `"data-team"`) {
		t.Errorf("invitee's teams: %s", r.Body)
	}

	// Admin keys: shown once, listed without secrets, revocable.
	r = s.teamMust(t, 200, "POST", "/api/admin-keys", key, `{"name":"ci","team_roles":{"backend-team":"MANAGER"}}`)
	assertGolden(t, "admin_key_create.json", r.Body, []string{"id", "prefix", "key", "created_at"})
	var created struct {
		AdminKey struct{ ID string } `json:"admin_key"`
		Key      string
	}
	_ = json.Unmarshal(r.Body, &created)
	if !strings.HasPrefix(created.Key, "tmak_") {
		t.Fatal("created key lacks the tmak_ prefix")
	}
	s.teamMust(t, 200, "GET", "/api/teams/backend-team/members", created.Key, "")
	r = s.teamMust(t, 200, "GET", "/api/admin-keys", key, "")
	if strings.Contains(string(r.Body), created.Key) || strings.Contains(string(r.Body), "key_hash") {
		t.Error("key list shows a secret")
	}
	assertGolden(t, "admin_keys_list.json", r.Body, []string{"id", "prefix", "created_at", "last_used_at"})
	r = s.teamMust(t, 200, "DELETE", "/api/admin-keys/"+created.AdminKey.ID, key, "")
	assertGolden(t, "admin_key_revoke.json", r.Body, []string{"id"})
	deadline = time.Now().Add(10 * time.Second) // services cache principals for 5 s
	for s.teamReq(t, "GET", "/api/teams", created.Key, "").Status != 401 {
		if time.Now().After(deadline) {
			t.Fatal("revoked admin key still accepted after 10s")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Deleting a team asks the token service; if it cannot answer, refuse.
	s.teamMust(t, 200, "DELETE", "/api/users/"+ava+"/team-membership/data-team", joey(), "")
	switch r := s.teamReq(t, "DELETE", "/api/teams/data-team", joey(), ""); r.Status {
	case 503:
		if d := detail(t, r); d != "cannot verify the team has no tokens" {
			t.Errorf("detail %q", d)
		}
	case 200:
		assertGolden(t, "team_delete.json", r.Body, nil)
	default:
		t.Errorf("DELETE /api/teams/data-team: %d %s", r.Status, r.Body)
	}
}

func TestTeamRESTBadInput(t *testing.T) {
	s := startStack(t)
	seedPeople(s)
	key := s.adminKey
	s.teamMust(t, 200, "POST", "/api/teams", key, `{"id":"backend-team","name":"Backend Team"}`)
	s.teamMust(t, 200, "POST", "/api/users/user_mia/team-membership", key, `{"team_id":"backend-team","role":"ADMIN"}`)
	long := strings.Repeat("x", 101)
	cases := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/api/teams", `{"id":"Bad Id","name":"x"}`, 400},
		{"POST", "/api/teams", `{"id":"","name":"x"}`, 400},
		{"POST", "/api/teams", `{"id":"` + strings.Repeat("a", 51) + `","name":"x"}`, 400},
		{"POST", "/api/teams", `{"id":"backend-team","name":"dup"}`, 409},
		{"POST", "/api/teams", `{"id":"ok-team","name":""}`, 400},
		{"POST", "/api/teams", `{"id":"ok-team","name":"` + long + `"}`, 400},
		{"POST", "/api/teams", `{"id":"ok-team","name":"x","color":"red"}`, 400},
		{"POST", "/api/teams", `{"id":"ok-team","name":"x","icon":"` + long + `"}`, 400},
		{"POST", "/api/teams", `{"id":"ok-team","name":"x","description":"` + strings.Repeat("d", 501) + `"}`, 400},
		{"POST", "/api/teams", `{"id":"ok-team","name":"x","bogus":1}`, 400},
		{"POST", "/api/teams", `{"id":5}`, 400},
		{"POST", "/api/teams", `{not json`, 400},
		{"GET", "/api/teams/Bad_Team", "", 400},
		{"GET", "/api/teams/ghost", "", 404},
		{"PUT", "/api/teams/backend-team", `{}`, 400},
		{"PUT", "/api/teams/backend-team", `{"name":null}`, 400},
		{"PUT", "/api/teams/backend-team", `{"color":"#12345g"}`, 400},
		{"PUT", "/api/teams/backend-team", `{"name":"` + long + `"}`, 400},
		{"PUT", "/api/teams/ghost", `{"name":"x"}`, 404},
		{"DELETE", "/api/teams/ghost", "", 404},
		{"DELETE", "/api/teams/core-team", "", 400},
		{"DELETE", "/api/teams/backend-team", "", 400}, // has a member
		{"GET", "/api/teams/ghost/members", "", 404},
		{"PUT", "/api/users/user_noah/team-role", `{"team_id":"backend-team","role":"OWNER"}`, 400},
		{"PUT", "/api/users/user_noah/team-role", `{"team_id":"backend-team","role":""}`, 400},
		{"PUT", "/api/users/user_noah/team-role", `{"team_id":"Bad Team","role":"VIEWER"}`, 400},
		{"PUT", "/api/users/user_noah/team-role", `{"team_id":"ghost","role":"VIEWER"}`, 404},
		{"PUT", "/api/users/user_mia/team-role", `{"team_id":"backend-team","role":"VIEWER"}`, 400}, // last ADMIN
		{"POST", "/api/users/user_noah/team-membership", `{"team_id":"backend-team","role":"admin"}`, 400},
		{"POST", "/api/users/user_noah/team-membership", `{"team_id":"ghost","role":"VIEWER"}`, 404},
		{"POST", "/api/users/bad%20id/team-membership", `{"team_id":"backend-team","role":"VIEWER"}`, 400},
		{"DELETE", "/api/users/user_noah/team-membership/backend-team", "", 404},
		{"DELETE", "/api/users/user_noah/team-membership/Bad_Team", "", 400},
		{"POST", "/api/invitations", `{"email":"not-an-email"}`, 400},
		{"POST", "/api/invitations", `{"email":"Joe <joe@example.com>"}`, 400},
		{"POST", "/api/invitations", `{"email":"mia@example.com"}`, 409},
		{"POST", "/api/invitations", `{"email":"x@example.com","team_roles":{"ghost":"VIEWER"}}`, 400},
		{"POST", "/api/invitations", `{"email":"x@example.com","team_roles":{"backend-team":"OWNER"}}`, 400},
		{"POST", "/api/invitations", `{"email":"x@example.com","team_roles":["backend-team"]}`, 400},
		{"DELETE", "/api/invitations/inv_nope", "", 404},
		{"POST", "/api/admin-keys", `{"name":""}`, 400},
		{"POST", "/api/admin-keys", `{"name":"` + long + `"}`, 400},
		{"POST", "/api/admin-keys", `{"name":"x","global_role":"ROOT"}`, 400},
		{"POST", "/api/admin-keys", `{"name":"x","team_roles":{"ghost":"VIEWER"}}`, 400},
		{"POST", "/api/admin-keys", `{"name":"x","team_roles":{"backend-team":"KING"}}`, 400},
		{"DELETE", "/api/admin-keys/ak_nope", "", 404},
		{"DELETE", "/api/admin-keys/bad%20id", "", 400},
	}
	before := s.teamSnapshot(t)
	clerkInvites := len(s.clerk.Invitations())
	for _, c := range cases {
		r := s.teamReq(t, c.method, c.path, key, c.body)
		if r.Status != c.status {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, r.Status, r.Body, c.status)
			continue
		}
		if d := detail(t, r); d == "" || strings.Contains(d, "SQLSTATE") || strings.Contains(d, "pgx") {
			t.Errorf("%s %s: detail %q", c.method, c.path, d)
		}
	}
	if after := s.teamSnapshot(t); after != before {
		t.Errorf("refused requests changed the team schema:\n%s\n%s", before, after)
	}
	if len(s.clerk.Invitations()) != clerkInvites {
		t.Error("refused invitations reached Clerk")
	}
}

func TestImportRolesCommand(t *testing.T) {
	s := startStack(t)
	s.clerk.AddUser(authtest.FakeUser{ID: "user_old", Email: "old@example.com", PublicMetadata: map[string]any{
		"tokenManager:teamRoles": map[string]any{"core-team": "MANAGER", "gone-team": "ADMIN"}, "tokenManager:globalRole": "ADMIN"}})
	run := func(args ...string) map[string]any {
		cmd := exec.Command(filepath.Join(binDir, "tmctl"), append([]string{"import-roles"}, args...)...)
		cmd.Env = s.env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("tmctl import-roles %v: %v\n%s", args, err, errOut.String())
		}
		var res map[string]any
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("output %q: %v", out.String(), err)
		}
		return res
	}
	if res := run("-dry-run"); res["memberships_imported"] != 1.0 || res["global_admins_imported"] != 1.0 || res["dry_run"] != true {
		t.Errorf("dry run %v", res)
	}
	if r := s.teamReq(t, "GET", "/api/admin-keys", s.clerk.SessionToken(t, "user_old"), ""); r.Status != 403 {
		t.Errorf("dry run granted roles: %d", r.Status)
	}
	if res := run(); res["memberships_imported"] != 1.0 || len(res["skipped"].([]any)) != 1 {
		t.Errorf("import %v", res)
	}
	// Now a global ADMIN through PostgreSQL.
	s.teamMust(t, 200, "GET", "/api/admin-keys", s.clerk.SessionToken(t, "user_old"), "")
}
