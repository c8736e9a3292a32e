package auth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

func TestRoles(t *testing.T) {
	t.Parallel()
	order := []auth.Role{auth.RoleViewer, auth.RoleDeveloper, auth.RoleManager, auth.RoleAdmin}
	for i, r := range order {
		for j, min := range order {
			if got, want := r.AtLeast(min), i >= j; got != want {
				t.Errorf("%s.AtLeast(%s) = %v, want %v", r, min, got, want)
			}
		}
		if auth.Role("").AtLeast(r) {
			t.Errorf("no role is at least %s", r)
		}
		if got, err := auth.ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%s) = %v, %v", r, got, err)
		}
	}
	for _, bad := range []string{"", "admin", "OWNER", " ADMIN"} {
		_, err := auth.ParseRole(bad)
		if !errors.Is(err, errs.ErrInvalidArgument) {
			t.Errorf("ParseRole(%q) err = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestPrincipalRoles(t *testing.T) {
	t.Parallel()
	p := &auth.Principal{TeamRoles: map[string]auth.Role{"core-team": auth.RoleManager, "web": auth.RoleViewer}}
	if got := p.RoleIn("core-team"); got != auth.RoleManager {
		t.Errorf("RoleIn(core-team) = %q", got)
	}
	if got := p.RoleIn("other"); got != "" {
		t.Errorf("RoleIn(other) = %q", got)
	}
	if got := p.HighestRole(); got != auth.RoleManager {
		t.Errorf("HighestRole = %q", got)
	}
	if p.IsGlobalAdmin() {
		t.Error("IsGlobalAdmin = true")
	}
	if got := (&auth.Principal{}).HighestRole(); got != auth.RoleViewer {
		t.Errorf("HighestRole without teams = %q, want VIEWER", got)
	}
	admin := &auth.Principal{GlobalRole: auth.RoleAdmin}
	if !admin.IsGlobalAdmin() || admin.HighestRole() != auth.RoleAdmin {
		t.Errorf("global admin: IsGlobalAdmin=%v HighestRole=%q", admin.IsGlobalAdmin(), admin.HighestRole())
	}
}

func TestPrincipalContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, ok := auth.FromContext(ctx); ok {
		t.Error("principal in empty context")
	}
	if err := auth.RequireService(ctx); !errors.Is(err, errs.ErrUnauthenticated) {
		t.Errorf("RequireService(anonymous) = %v", err)
	}

	user := &auth.Principal{Kind: auth.KindUser, ID: "user_1"}
	ctx = auth.WithPrincipal(ctx, user)
	if got, ok := auth.FromContext(ctx); !ok || got != user {
		t.Errorf("FromContext = %v, %v", got, ok)
	}
	if err := auth.RequireService(ctx); !errors.Is(err, errs.ErrPermissionDenied) {
		t.Errorf("RequireService(user) = %v", err)
	}

	svc := auth.WithPrincipal(ctx, &auth.Principal{Kind: auth.KindService, ID: "usage"})
	if err := auth.RequireService(svc); err != nil {
		t.Errorf("RequireService(service) = %v", err)
	}
}
