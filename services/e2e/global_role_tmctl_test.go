package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

// TestGlobalAdminCommand: "tmctl global-admin" names the first global
// ADMIN without an admin key, lists them, refuses an unknown user and the
// last one, and its changes are audited (actor tmctl) and mirrored to Clerk
// by the running team service, and take effect in the REST API at once.
func TestGlobalAdminCommand(t *testing.T) {
	s := startStack(t)
	s.clerk.AddUser(authtest.FakeUser{ID: "user_first", Email: "first@example.com"})
	s.clerk.AddUser(authtest.FakeUser{ID: "user_second", Email: "second@example.com"})
	run := func(args ...string) (string, string, int) {
		return s.tmctl(t, append([]string{"global-admin"}, args...)...)
	}
	first := func() string { return s.clerk.SessionToken(t, "user_first") }
	s.teamMust(t, 403, "GET", "/api/admin-keys", first(), "")

	out, errOut, code := run("grant", "user_first")
	if code != 0 || strings.TrimSpace(out) != `{"changed":true,"global_role":"ADMIN","user_id":"user_first"}` {
		t.Fatalf("grant: %d %q %q", code, out, errOut)
	}
	s.teamMust(t, 200, "GET", "/api/admin-keys", first(), "")
	if out, _, code := run("grant", "user_first"); code != 0 || !strings.Contains(out, `"changed":false`) {
		t.Errorf("grant again: %d %q", code, out)
	}
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"grant", "user_ghost"}, 1, "User not found"},
		{[]string{"grant", "bad id"}, 1, "Invalid user id"},
		{[]string{"revoke", "user_second"}, 1, "User is not a global ADMIN"},
		{[]string{"revoke", "user_first"}, 1, "Cannot revoke the last global ADMIN"},
		{[]string{"promote", "user_first"}, 2, "usage"},
		{[]string{"grant"}, 2, "usage"},
	} {
		if _, errOut, code := run(c.args...); code != c.code || !strings.Contains(errOut, c.err) {
			t.Errorf("%v: exit %d %q, want %d and %q", c.args, code, errOut, c.code, c.err)
		}
	}
	if _, _, code := run("grant", "user_second"); code != 0 {
		t.Fatal("grant user_second")
	}
	out, _, _ = run("list")
	var list []struct {
		UserID    string  `json:"user_id"`
		Email     *string `json:"email"`
		GrantedBy string  `json:"granted_by"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].UserID != "user_first" ||
		list[0].Email == nil || *list[0].Email != "first@example.com" || list[1].GrantedBy != "tmctl" {
		t.Fatalf("list: %v %s", err, out)
	}
	if _, errOut, code := run("revoke", "user_first"); code != 0 {
		t.Fatalf("revoke: %s", errOut)
	}
	s.teamMust(t, 403, "GET", "/api/admin-keys", first(), "")

	// The team service's relay delivers what tmctl queued.
	deadline := time.Now().Add(15 * time.Second)
	for {
		f, _ := s.clerk.User("user_first")
		sec, _ := s.clerk.User("user_second")
		_, firstHas := f.PublicMetadata["tokenManager:globalRole"]
		if !firstHas && sec.PublicMetadata["tokenManager:globalRole"] == "ADMIN" &&
			s.count(t, `SELECT count(*) FROM audit.events WHERE entity_type = 'global_role' AND actor_id = 'tmctl'`) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not mirrored or audited: first %v, second %v, %d events", f.PublicMetadata, sec.PublicMetadata,
				s.count(t, `SELECT count(*) FROM audit.events WHERE entity_type = 'global_role'`))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
