package authz

import (
	"testing"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
)

func person(roles map[string]auth.Role) *auth.Principal {
	return &auth.Principal{Kind: auth.KindUser, ID: "user_me", TeamRoles: roles}
}

func TestMatrix(t *testing.T) {
	const T = "backend-team"
	globalAdmin := &auth.Principal{Kind: auth.KindUser, ID: "user_g", GlobalRole: auth.RoleAdmin}
	principals := map[string]*auth.Principal{
		"global":      globalAdmin,
		"admin":       person(map[string]auth.Role{T: auth.RoleAdmin}),
		"manager":     person(map[string]auth.Role{T: auth.RoleManager}),
		"developer":   person(map[string]auth.Role{T: auth.RoleDeveloper}),
		"viewer":      person(map[string]auth.Role{T: auth.RoleViewer}),
		"other-admin": person(map[string]auth.Role{"data-team": auth.RoleAdmin}),
		"core-dev":    person(map[string]auth.Role{CoreTeam: auth.RoleDeveloper}),
		"core-mgr":    person(map[string]auth.Role{CoreTeam: auth.RoleManager}),
		"core-admin":  person(map[string]auth.Role{CoreTeam: auth.RoleAdmin}),
		"admin-key":   {Kind: auth.KindAdminKey, ID: "ak_1", TeamRoles: map[string]auth.Role{T: auth.RoleManager}},
		"service":     {Kind: auth.KindService, ID: "usage"},
	}
	// allowed[action] lists who may act on a resource of team T.
	allowed := map[Action][]string{
		TokenCreate:    {"global", "admin", "manager", "developer"},
		TokenUpdate:    {"global", "admin", "manager", "admin-key"},
		TokenDelete:    {"global", "admin", "manager", "admin-key"},
		TokenRotate:    {"global", "admin", "manager", "admin-key"},
		TokenReveal:    {"global", "admin", "manager", "admin-key"},
		TokenUsage:     {"global", "admin", "manager", "admin-key"},
		RouteCreate:    {"global", "core-dev", "core-mgr", "core-admin"},
		RouteUpdate:    {"global", "core-mgr", "core-admin"},
		RouteDelete:    {"global", "core-admin"},
		TeamCreate:     {"global", "admin", "other-admin", "core-admin"},
		TeamUpdate:     {"global", "admin"},
		TeamDelete:     {"global", "admin"},
		TeamRead:       {"global", "admin", "manager", "developer", "viewer", "admin-key"},
		MembersManage:  {"global", "admin", "manager", "admin-key"},
		UserList:       {"global", "admin", "manager", "other-admin", "core-mgr", "core-admin", "admin-key"},
		AdminKeyManage: {"global"},
		// Which roles the invitation may carry is CanGrant's question.
		InvitationCreate: {"global", "admin", "other-admin", "core-admin"},
		InvitationList:   {"global"},
		InvitationAdmin:  {"global"},
		RolesImport:      {"global"},
		GlobalRoleManage: {"global"},
	}
	allowed[TokenCreate] = append(allowed[TokenCreate], "admin-key")
	for action, who := range allowed {
		for name, p := range principals {
			want := false
			for _, w := range who {
				want = want || w == name
			}
			err := Authorize(p, action, Resource{Team: T})
			if got := err == nil; got != want {
				t.Errorf("%s %s: allowed=%v, want %v (%v)", name, action, got, want, err)
			}
		}
	}
}

func TestCreatorMayReveal(t *testing.T) {
	dev := person(map[string]auth.Role{"t": auth.RoleDeveloper})
	if err := Authorize(dev, TokenReveal, Resource{Team: "t", CreatedBy: "user_me"}); err != nil {
		t.Errorf("creator refused: %v", err)
	}
	if err := Authorize(dev, TokenReveal, Resource{Team: "t", CreatedBy: "user_other"}); err == nil {
		t.Error("developer revealed someone else's token")
	}
	// A creator who left the team loses the right.
	gone := person(map[string]auth.Role{"other": auth.RoleAdmin})
	if err := Authorize(gone, TokenReveal, Resource{Team: "t", CreatedBy: "user_me"}); err == nil {
		t.Error("former member revealed a token")
	}
}

func TestCanGrant(t *testing.T) {
	const T = "t"
	mgr := person(map[string]auth.Role{T: auth.RoleManager})
	admin := person(map[string]auth.Role{T: auth.RoleAdmin})
	cases := []struct {
		p             *auth.Principal
		role, current auth.Role
		ok            bool
	}{
		{mgr, auth.RoleDeveloper, "", true},
		{mgr, auth.RoleViewer, auth.RoleDeveloper, true},
		{mgr, auth.RoleManager, "", false},
		{mgr, auth.RoleAdmin, "", false},
		{mgr, auth.RoleViewer, auth.RoleManager, false},
		{admin, auth.RoleAdmin, "", true},
		{admin, auth.RoleViewer, auth.RoleAdmin, true},
		{person(map[string]auth.Role{T: auth.RoleDeveloper}), auth.RoleViewer, "", false},
		{person(map[string]auth.Role{"x": auth.RoleAdmin}), auth.RoleViewer, "", false},
	}
	for i, c := range cases {
		if err := CanGrant(c.p, T, c.role, c.current); (err == nil) != c.ok {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestReadScope(t *testing.T) {
	all, teams := ReadScope(person(map[string]auth.Role{"b": auth.RoleViewer, "a": auth.RoleAdmin}))
	if all || len(teams) != 2 || teams[0] != "a" {
		t.Errorf("scope %v %v", all, teams)
	}
	if all, _ := ReadScope(&auth.Principal{GlobalRole: auth.RoleAdmin}); !all {
		t.Error("global admin not scoped to all")
	}
	if CanRead(person(nil), "a") {
		t.Error("no-team user reads team data")
	}
}
