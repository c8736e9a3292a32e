package e2e

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

// TestGlobalRoleREST: PUT and DELETE /api/users/{user_id}/global-role
// through the gateway against the real services. Bad input is 400, an
// unknown user 404, a caller without the global role 403, the last global
// ADMIN 409 — each with {"detail"} and without changing anything. A grant
// works at once, in every service; a revocation stops working at the next
// request, also in a service that caches principals (audit); Clerk's
// tokenManager:globalRole follows both; both are in the audit trail with
// the user's e-mail as name and the actor as created_by/deleted_by.
func TestGlobalRoleREST(t *testing.T) {
	s := startStack(t)
	seedPeople(s)
	s.exec(t, `INSERT INTO team.global_roles (user_id, role) VALUES ('user_root', 'ADMIN')`)
	root := func() string { return s.clerk.SessionToken(t, "user_root") }
	joey := func() string { return s.clerk.SessionToken(t, "user_joey") }
	s.teamMust(t, 200, "POST", "/api/teams", root(), `{"id":"backend-team","name":"Backend Team"}`)
	s.teamMust(t, 200, "POST", "/api/users/user_joey/team-membership", root(), `{"team_id":"backend-team","role":"ADMIN"}`)
	state := func() string {
		var b strings.Builder
		for _, id := range []string{"user_root", "user_joey", "user_mia"} {
			b.WriteString(id)
			if s.count(t, `SELECT count(*) FROM team.global_roles WHERE user_id = $1`, id) > 0 {
				b.WriteString("=ADMIN")
			}
			b.WriteString(";")
		}
		return b.String() + s.teamSnapshot(t)
	}

	before := state()
	for _, c := range []struct {
		name, method, path, bearer, body string
		status                           int
		detail                           string
	}{
		{"team role", "PUT", "/api/users/user_joey/global-role", root(), `{"role":"MANAGER"}`, 400, "Invalid global role: MANAGER (the only global role is ADMIN)"},
		{"lower case", "PUT", "/api/users/user_joey/global-role", root(), `{"role":"admin"}`, 400, ""},
		{"no role", "PUT", "/api/users/user_joey/global-role", root(), `{}`, 400, ""},
		{"role not a string", "PUT", "/api/users/user_joey/global-role", root(), `{"role":["ADMIN"]}`, 400, ""},
		{"not JSON", "PUT", "/api/users/user_joey/global-role", root(), `{"role":`, 400, ""},
		{"bad user id", "PUT", "/api/users/user%20joey/global-role", root(), `{"role":"ADMIN"}`, 400, "Invalid user id"},
		{"bad user id (revoke)", "DELETE", "/api/users/user.joey/global-role", root(), "", 400, "Invalid user id"},
		{"unknown user", "PUT", "/api/users/user_ghost/global-role", root(), `{"role":"ADMIN"}`, 404, "User not found"},
		{"revoke a non-admin", "DELETE", "/api/users/user_mia/global-role", root(), "", 404, "User is not a global ADMIN"},
		{"team ADMIN grants", "PUT", "/api/users/user_joey/global-role", joey(), `{"role":"ADMIN"}`, 403, "Permission denied: global ADMIN only"},
		{"team ADMIN revokes", "DELETE", "/api/users/user_root/global-role", joey(), "", 403, ""},
		{"anonymous", "PUT", "/api/users/user_joey/global-role", "", `{"role":"ADMIN"}`, 401, ""},
		{"the last global ADMIN", "DELETE", "/api/users/user_root/global-role", root(), "", 409, "Cannot revoke the last global ADMIN: grant the role to someone else first"},
	} {
		r := s.teamReq(t, c.method, c.path, c.bearer, c.body)
		if r.Status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.Status, r.Body, c.status)
			continue
		}
		if d := detail(t, r); d == "" || (c.detail != "" && d != c.detail) {
			t.Errorf("%s: detail %q, want %q", c.name, d, c.detail)
		}
	}
	if after := state(); after != before {
		t.Fatalf("refused requests changed state:\n%s\n%s", before, after)
	}

	// Joey, an ADMIN of one team, may not read the chain's verification
	// (global ADMIN only, audit service): the cache of the audit service now
	// holds his principal.
	s.teamMust(t, 403, "GET", "/api/dashboard/audit-logs/verify", joey(), "")

	r := s.teamMust(t, 200, "PUT", "/api/users/user_joey/global-role", root(), `{"role":"ADMIN"}`)
	assertGolden(t, "global_role_grant.json", r.Body, nil)
	r = s.teamMust(t, 200, "PUT", "/api/users/user_joey/global-role", root(), `{"role":"ADMIN"}`)
	if !strings.Contains(string(r.Body), `"changed":false`) {
		t.Errorf("granting again: %s", r.Body)
	}
	// Within the audit service's principal cache TTL (5 s) a granted role
	// may still be missing there; in the team service it is there at once.
	s.teamMust(t, 200, "GET", "/api/invitations", joey(), "")
	eventuallyStatus(t, s, "GET", "/api/dashboard/audit-logs/verify", joey, 200)

	// Joey, now a global ADMIN, revokes root, who made him one: root's very
	// next requests are refused, in the team service and in the audit
	// service, which had just served root.
	s.teamMust(t, 200, "GET", "/api/dashboard/audit-logs/verify", root(), "")
	r = s.teamMust(t, 200, "DELETE", "/api/users/user_root/global-role", joey(), "")
	assertGolden(t, "global_role_revoke.json", r.Body, nil)
	s.teamMust(t, 403, "GET", "/api/dashboard/audit-logs/verify", root(), "")
	s.teamMust(t, 403, "GET", "/api/invitations", root(), "")
	s.teamMust(t, 403, "PUT", "/api/users/user_root/global-role", root(), `{"role":"ADMIN"}`)
	// Joey is the last one now.
	s.teamMust(t, 409, "DELETE", "/api/users/user_joey/global-role", joey(), "")

	// /api/users shows the roles at once; Clerk follows.
	r = s.teamMust(t, 200, "GET", "/api/users", joey(), "")
	var users []struct {
		ID             string         `json:"id"`
		PublicMetadata map[string]any `json:"publicMetadata"`
	}
	if err := json.Unmarshal(r.Body, &users); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		want := map[string]any{"user_joey": "ADMIN"}[u.ID]
		if got := u.PublicMetadata["tokenManager:globalRole"]; got != want {
			t.Errorf("/api/users: %s has global role %v, want %v", u.ID, got, want)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := s.clerk.User("user_joey")
		r, _ := s.clerk.User("user_root")
		_, rootHas := r.PublicMetadata["tokenManager:globalRole"]
		if j.PublicMetadata["tokenManager:globalRole"] == "ADMIN" && !rootHas &&
			j.PublicMetadata["tokenManager:teamRoles"].(map[string]any)["backend-team"] == "ADMIN" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Clerk metadata not mirrored: joey %v, root %v", j.PublicMetadata, r.PublicMetadata)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The trail, as the dashboard reads it: a string name (the user's
	// e-mail) and the operator's e-mail under the key the action implies.
	type row struct {
		Action, EntityType, EntityID string
		Details                      map[string]any
	}
	var got []row
	deadline = time.Now().Add(20 * time.Second)
	for {
		r := s.teamMust(t, 200, "GET", "/api/dashboard/audit-logs?entity_type=global_role&limit=50", joey(), "")
		var page struct {
			Data []struct {
				Action     string          `json:"action"`
				EntityType string          `json:"entity_type"`
				EntityID   json.RawMessage `json:"entity_id"`
				Details    map[string]any  `json:"details"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatalf("audit logs: %v: %s", err, r.Body)
		}
		got = got[:0]
		for _, d := range page.Data {
			var id string
			_ = json.Unmarshal(d.EntityID, &id)
			got = append(got, row{d.Action, d.EntityType, id, d.Details})
		}
		if len(got) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(got) != 2 {
		t.Fatalf("global_role events: %+v, want 2", got)
	}
	for _, want := range []row{
		{"delete", "global_role", "user_root", map[string]any{"name": "root@example.com", "user_id": "user_root", "role": "ADMIN",
			"deleted_by": "user_joey", "deleted_by_email": "joey@example.com"}},
		{"create", "global_role", "user_joey", map[string]any{"name": "joey@example.com", "user_id": "user_joey", "role": "ADMIN",
			"created_by": "user_root", "created_by_email": "root@example.com"}},
	} {
		found := false
		for _, g := range got {
			if g.Action != want.Action || g.EntityID != want.EntityID || g.EntityType != want.EntityType {
				continue
			}
			found = true
			for k, v := range want.Details {
				if g.Details[k] != v {
					t.Errorf("%s %s: details[%q] = %#v, want %#v (all: %v)", g.Action, g.EntityID, k, g.Details[k], v, g.Details)
				}
			}
		}
		if !found {
			t.Errorf("no %s event for %s in %+v", want.Action, want.EntityID, got)
		}
	}
}

// TestGlobalRoleRevokeRace: two global ADMINs revoke each other at the same
// moment through the REST API, round after round. Exactly one wins each
// time; the other gets 409 and there is always one global ADMIN left.
func TestGlobalRoleRevokeRace(t *testing.T) {
	s := startStack(t)
	for _, u := range []authtest.FakeUser{{ID: "user_a", Email: "a@example.com"}, {ID: "user_b", Email: "b@example.com"}} {
		s.clerk.AddUser(u)
	}
	const rounds = 20
	for i := range rounds {
		s.exec(t, `INSERT INTO team.global_roles (user_id, role) VALUES ('user_a', 'ADMIN'), ('user_b', 'ADMIN') ON CONFLICT DO NOTHING`)
		ta, tb := s.clerk.SessionToken(t, "user_a"), s.clerk.SessionToken(t, "user_b")
		var ra, rb response
		var start, done sync.WaitGroup
		start.Add(1)
		done.Add(2)
		go func() {
			defer done.Done()
			start.Wait()
			ra = send(t, "DELETE", s.url+"/api/users/user_b/global-role", ta, "", nil)
		}()
		go func() {
			defer done.Done()
			start.Wait()
			rb = send(t, "DELETE", s.url+"/api/users/user_a/global-role", tb, "", nil)
		}()
		start.Done()
		done.Wait()
		left := s.count(t, `SELECT count(*) FROM team.global_roles`)
		ok := (ra.Status == 200 && (rb.Status == 409 || rb.Status == 403)) || (rb.Status == 200 && (ra.Status == 409 || ra.Status == 403))
		// 403: the loser's principal was resolved after the winner's commit,
		// so it was no longer a global ADMIN — refused all the same.
		if !ok || left != 1 {
			t.Fatalf("round %d: a→b %d %s, b→a %d %s, %d global admins left", i, ra.Status, ra.Body, rb.Status, rb.Body, left)
		}
	}
}

// eventuallyStatus repeats a request (with a fresh credential each time)
// until it answers status, for up to 10 s.
func eventuallyStatus(t *testing.T, s *stack, method, path string, bearer func() string, status int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.teamReq(t, method, path, bearer(), "")
		if r.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: %d %s, want %d", method, path, r.Status, r.Body, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
