package team

import (
	"reflect"
	"testing"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

// TestListUsersShowsOnlyManagedRoles: a team MANAGER listing users sees a
// person of their team with that team's role only, and none of the rest of
// our Clerk namespace (v2.1's legacy keys name the person's other teams,
// invitedBy names a person of another team); keys outside it stay. A global
// ADMIN sees the metadata as Clerk holds it.
func TestListUsersShowsOnlyManagedRoles(t *testing.T) {
	h := newHarness(t)
	legacy := map[string]any{
		"tokenManager:team": "beta", "tokenManager:role": "ADMIN",
		"tokenManager:teams":     []any{map[string]any{"id": "beta", "name": "Beta Team"}},
		"tokenManager:invitedBy": "user_beta_admin", "theme": "dark",
	}
	h.clerk.AddUser(authtest.FakeUser{ID: "user_both", Email: "both@example.com", PublicMetadata: legacy})
	h.clerk.AddUser(authtest.FakeUser{ID: "user_mgr", Email: "mgr@example.com"})
	mgr := h.person("user_mgr", "alpha", "MANAGER")
	h.person("user_both", "alpha", "VIEWER", "beta", "ADMIN")

	metaOf := func(resp *teamv1.ListUsersResponse) map[string]any {
		for _, u := range resp.GetUsers() {
			if u.GetId() == "user_both" {
				return u.GetPublicMetadata().AsMap()
			}
		}
		t.Fatal("user_both not listed")
		return nil
	}
	resp, err := h.srv.ListUsers(mgr, &teamv1.ListUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"tokenManager:teamRoles": map[string]any{"alpha": "VIEWER"}, "theme": "dark"}
	if got := metaOf(resp); !reflect.DeepEqual(got, want) {
		t.Errorf("MANAGER of alpha sees %v, want %v", got, want)
	}

	resp, err = h.srv.ListUsers(h.globalAdmin("user_root"), &teamv1.ListUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := metaOf(resp)
	if got["tokenManager:team"] != "beta" || got["tokenManager:invitedBy"] != "user_beta_admin" ||
		!reflect.DeepEqual(got["tokenManager:teamRoles"], map[string]any{"alpha": "VIEWER", "beta": "ADMIN"}) {
		t.Errorf("global ADMIN sees %v", got)
	}
}
