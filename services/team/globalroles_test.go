package team

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

// globalState is what refused global-role requests must leave unchanged.
func (h *harness) globalState() string {
	h.t.Helper()
	var s string
	if err := h.pool.QueryRow(h.ctx, `SELECT concat_ws('|',
		(SELECT string_agg(user_id || role, ',' ORDER BY user_id) FROM team.global_roles),
		(SELECT count(*) FROM team.outbox))`).Scan(&s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) globalAdmins() []string {
	h.t.Helper()
	rows, err := h.pool.Query(h.ctx, `SELECT user_id FROM team.global_roles ORDER BY user_id`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, id)
	}
	return out
}

func TestGlobalRoleRefusals(t *testing.T) {
	h := newHarness(t)
	h.clerk.AddUser(authtest.FakeUser{ID: "user_ann", Email: "ann@example.com"})
	root := h.globalAdmin("user_root")
	teamAdmin := h.person("user_admin", "alpha", "ADMIN")
	coreAdmin := h.person("user_core", "core-team", "ADMIN")
	set := func(ctx context.Context, user, role string) error {
		_, err := h.srv.SetUserGlobalRole(ctx, &teamv1.SetUserGlobalRoleRequest{UserId: user, Role: role})
		return err
	}
	remove := func(ctx context.Context, user string) error {
		_, err := h.srv.RemoveUserGlobalRole(ctx, &teamv1.RemoveUserGlobalRoleRequest{UserId: user})
		return err
	}
	teamKey := auth.WithPrincipal(h.ctx, &auth.Principal{Kind: auth.KindAdminKey, ID: "ak_team", Name: "team key",
		TeamRoles: map[string]auth.Role{"alpha": auth.RoleAdmin}})

	before := h.globalState()
	for _, c := range []struct {
		name string
		err  error
		want codes.Code
		msg  string
	}{
		{"team role MANAGER", set(root, "user_ann", "MANAGER"), codes.InvalidArgument, "Invalid global role: MANAGER (the only global role is ADMIN)"},
		{"lower-case admin", set(root, "user_ann", "admin"), codes.InvalidArgument, ""},
		{"empty role", set(root, "user_ann", ""), codes.InvalidArgument, ""},
		{"bad user id", set(root, "user/../x", "ADMIN"), codes.InvalidArgument, "Invalid user id"},
		{"empty user id", remove(root, ""), codes.InvalidArgument, "Invalid user id"},
		{"unknown user", set(root, "user_ghost", "ADMIN"), codes.NotFound, "User not found"},
		{"team ADMIN grants", set(teamAdmin, "user_ann", "ADMIN"), codes.PermissionDenied, "Permission denied: global ADMIN only"},
		{"core-team ADMIN grants", set(coreAdmin, "user_ann", "ADMIN"), codes.PermissionDenied, ""},
		{"team ADMIN revokes", remove(teamAdmin, "user_root"), codes.PermissionDenied, ""},
		{"team admin key grants", set(teamKey, "user_ann", "ADMIN"), codes.PermissionDenied, ""},
		{"service grants", set(h.service(), "user_ann", "ADMIN"), codes.PermissionDenied, ""},
		{"no principal", set(h.ctx, "user_ann", "ADMIN"), codes.Unauthenticated, ""},
		{"revoke a non-admin", remove(root, "user_ann"), codes.NotFound, "User is not a global ADMIN"},
		{"revoke the last", remove(root, "user_root"), codes.AlreadyExists, "Cannot revoke the last global ADMIN: grant the role to someone else first"},
	} {
		if code(c.err) != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		} else if c.msg != "" && msg(c.err) != c.msg {
			t.Errorf("%s: message %q, want %q", c.name, msg(c.err), c.msg)
		}
	}
	if after := h.globalState(); after != before {
		t.Fatalf("refused requests changed the database:\n%s\n%s", before, after)
	}

	// Clerk down: a grant cannot check the user, so it is Unavailable, not a guess.
	h.clerk.SetDown(true)
	if err := set(root, "user_ann", "ADMIN"); code(err) != codes.Unavailable {
		t.Errorf("grant with Clerk down: %v", err)
	}
	h.clerk.SetDown(false)
	if after := h.globalState(); after != before {
		t.Fatalf("a grant with Clerk down changed the database:\n%s\n%s", before, after)
	}
}

// A global ADMIN grants the role; the grantee holds it at once, Clerk's
// tokenManager:globalRole follows, every change is audited with the
// grantee's e-mail and the actor's id and e-mail; the grantee revokes the
// granter, who loses it at once; the last one cannot go.
func TestGlobalRoleGrantAndRevoke(t *testing.T) {
	h := newHarness(t)
	h.runMirror()
	h.clerk.AddUser(authtest.FakeUser{ID: "user_root", Email: "root@example.com", FirstName: "Root"})
	h.clerk.AddUser(authtest.FakeUser{ID: "user_ann", Email: "ann@example.com",
		PublicMetadata: map[string]any{"theme": "dark", "tokenManager:teamRoles": map[string]any{}}})
	h.person("user_ann", "alpha", "VIEWER")
	h.globalAdmin("user_root")
	root, err := h.svc.ResolveUser(h.ctx, "user_root") // with its e-mail, as the authenticator resolves it
	if err != nil {
		t.Fatal(err)
	}
	asRoot := auth.WithPrincipal(h.ctx, root)

	resp, err := h.srv.SetUserGlobalRole(asRoot, &teamv1.SetUserGlobalRoleRequest{UserId: "user_ann", Role: "ADMIN"})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetSuccess() || !resp.GetChanged() || resp.GetUserId() != "user_ann" || resp.GetRole() != "ADMIN" {
		t.Fatalf("grant: %v", resp)
	}
	ann, err := h.svc.ResolveUser(h.ctx, "user_ann")
	if err != nil || !ann.IsGlobalAdmin() || ann.RoleIn("alpha") != auth.RoleViewer {
		t.Fatalf("ann after the grant: %+v, %v", ann, err)
	}
	// Granting again changes nothing: no second event, no second mirror.
	if resp, err := h.srv.SetUserGlobalRole(asRoot, &teamv1.SetUserGlobalRoleRequest{UserId: "user_ann", Role: "ADMIN"}); err != nil || resp.GetChanged() {
		t.Fatalf("second grant: %v, %v", resp, err)
	}
	want := []auditEvent{{Action: "create", Details: map[string]any{"name": "ann@example.com", "user_id": "user_ann", "role": "ADMIN",
		"created_by": "user_root", "created_by_email": "root@example.com"}}}
	if got := h.auditEvents("global_role", "user_ann"); !reflect.DeepEqual(got, want) {
		t.Fatalf("grant events %+v, want %+v", got, want)
	}
	h.eventually("ann's global role in Clerk", func() bool {
		u, _ := h.clerk.User("user_ann")
		return u.PublicMetadata["tokenManager:globalRole"] == "ADMIN" && u.PublicMetadata["theme"] == "dark" &&
			reflect.DeepEqual(u.PublicMetadata["tokenManager:teamRoles"], map[string]any{"alpha": "VIEWER"})
	})
	if got := h.globalAdmins(); !reflect.DeepEqual(got, []string{"user_ann", "user_root"}) {
		t.Fatalf("global admins %v", got)
	}

	// The new global ADMIN may revoke the one who made them.
	asAnn := auth.WithPrincipal(h.ctx, ann)
	if _, err := h.srv.RemoveUserGlobalRole(asAnn, &teamv1.RemoveUserGlobalRoleRequest{UserId: "user_root"}); err != nil {
		t.Fatal(err)
	}
	want = []auditEvent{{Action: "delete", Details: map[string]any{"name": "root@example.com", "user_id": "user_root", "role": "ADMIN",
		"deleted_by": "user_ann", "deleted_by_email": "ann@example.com"}}}
	if got := h.auditEvents("global_role", "user_root"); !reflect.DeepEqual(got, want) {
		t.Fatalf("revoke events %+v, want %+v", got, want)
	}
	// Root's next request resolves without the role (the team service reads
	// its tables uncached) and is refused.
	root, err = h.svc.ResolveUser(h.ctx, "user_root")
	if err != nil || root.IsGlobalAdmin() {
		t.Fatalf("root after the revocation: %+v, %v", root, err)
	}
	if _, err := h.srv.SetUserGlobalRole(auth.WithPrincipal(h.ctx, root), &teamv1.SetUserGlobalRoleRequest{UserId: "user_root", Role: "ADMIN"}); code(err) != codes.PermissionDenied {
		t.Fatalf("revoked root grants itself: %v", err)
	}
	h.eventually("root's global role gone from Clerk", func() bool {
		u, _ := h.clerk.User("user_root")
		_, has := u.PublicMetadata["tokenManager:globalRole"]
		return !has
	})
	// Ann is the last one now, and may not revoke herself.
	if _, err := h.srv.RemoveUserGlobalRole(asAnn, &teamv1.RemoveUserGlobalRoleRequest{UserId: "user_ann"}); code(err) != codes.AlreadyExists {
		t.Fatalf("last global admin revoked herself: %v", err)
	}
	if got := h.globalAdmins(); !reflect.DeepEqual(got, []string{"user_ann"}) {
		t.Fatalf("global admins %v", got)
	}
}

// An admin key holding the global role (the bootstrap key) may grant and
// revoke; the events name the key. A user Clerk no longer knows can still
// be revoked, named by the cached e-mail.
func TestGlobalRoleByAdminKey(t *testing.T) {
	h := newHarness(t)
	h.clerk.AddUser(authtest.FakeUser{ID: "user_ann", Email: "ann@example.com"})
	h.clerk.AddUser(authtest.FakeUser{ID: "user_bob", Email: "bob@example.com"})
	h.globalAdmin("user_root")
	key := auth.WithPrincipal(h.ctx, &auth.Principal{Kind: auth.KindAdminKey, ID: "ak_boot", Name: "bootstrap", GlobalRole: auth.RoleAdmin})
	for _, u := range []string{"user_ann", "user_bob"} {
		if _, err := h.svc.SetGlobalRole(key, u, "ADMIN"); err != nil {
			t.Fatal(err)
		}
	}
	h.clerk.SetDown(true) // revocation needs no Clerk: the e-mail is cached
	if err := h.svc.RemoveGlobalRole(key, "user_bob"); err != nil {
		t.Fatal(err)
	}
	h.clerk.SetDown(false)
	if got := h.auditEvents("global_role", "user_bob"); len(got) != 2 ||
		got[1].Action != "delete" || got[1].Details["name"] != "bob@example.com" ||
		got[1].Details["deleted_by"] != "ak_boot" || got[1].Details["deleted_by_email"] != "bootstrap (admin key)" ||
		got[0].Details["created_by"] != "ak_boot" {
		t.Fatalf("events %+v", got)
	}
	// tmctl's direct path names itself.
	tmctl := auth.WithPrincipal(h.ctx, TmctlPrincipal)
	if _, err := GrantGlobalAdmin(tmctl, h.pool, h.svc.Directory, "user_bob"); err != nil {
		t.Fatal(err)
	}
	if err := RevokeGlobalAdmin(tmctl, h.pool, h.svc.Directory, "user_bob"); err != nil {
		t.Fatal(err)
	}
	byTmctl := 0
	for _, e := range h.auditEvents("global_role", "user_bob") {
		if e.Details["created_by_email"] == "tmctl (service)" || e.Details["deleted_by_email"] == "tmctl (service)" {
			byTmctl++
		}
	}
	if byTmctl != 2 {
		t.Fatalf("%d events by tmctl, want 2", byTmctl)
	}
	if got := h.globalAdmins(); !reflect.DeepEqual(got, []string{"user_ann", "user_root"}) {
		t.Fatalf("global admins %v", got)
	}
}

// TestRevokeGlobalAdminsRace revokes every global ADMIN at once, round
// after round: exactly one survives each time, and every other request is
// either done or refused as the last one's, never both for the same count.
// Without the row locks every revocation sees the full count and all pass.
func TestRevokeGlobalAdminsRace(t *testing.T) {
	h := newHarness(t)
	const admins, rounds = 6, 20
	key := auth.WithPrincipal(h.ctx, &auth.Principal{Kind: auth.KindAdminKey, ID: "ak_boot", Name: "bootstrap", GlobalRole: auth.RoleAdmin})
	for round := range rounds {
		h.exec(`DELETE FROM team.global_roles`)
		for i := range admins {
			h.exec(`INSERT INTO team.global_roles (user_id, role) VALUES ($1, 'ADMIN')`, fmt.Sprintf("user_g%d", i))
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, admins)
		for i := range admins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// Each revokes itself, as a person would: any of them may be the last.
				errs[i] = h.svc.RemoveGlobalRole(key, fmt.Sprintf("user_g%d", i))
			}()
		}
		close(start)
		wg.Wait()
		ok, last := 0, 0
		for i, err := range errs {
			switch code(err) {
			case codes.OK:
				ok++
			case codes.AlreadyExists:
				last++
			default:
				t.Fatalf("round %d, admin %d: %v", round, i, err)
			}
		}
		if left := len(h.globalAdmins()); left != 1 || ok != admins-1 || last != 1 {
			t.Fatalf("round %d: %d revoked, %d refused, %d global admins left; want %d, 1, 1", round, ok, last, left, admins-1)
		}
	}
}
