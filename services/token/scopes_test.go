package token

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// A token always has at least one scope, and every scope must grant
// something: a route's service segment, a tag some route carries, or "*".
func TestTokenScopesValidated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	dev := member("user_dev", "backend-team", auth.RoleDeveloper)
	mgr := member("user_mgr", "backend-team", auth.RoleManager)
	_, err := svc.CreateRoute(ctx, globalAdmin, RouteInput{Name: "OpenAI chat", Path: "/v1/openai/chat",
		BackendURL: "https://api.openai.com/v1", Tags: []string{"ai"}, AuthType: "none"})
	require.NoError(t, err)
	_, err = svc.CreateRoute(ctx, globalAdmin, RouteInput{Name: "Root", Path: "/solo",
		BackendURL: "https://solo.example.com", AuthType: "none"})
	require.NoError(t, err)

	refused := []struct {
		name    string
		scopes  []string
		mention string
	}{
		{"missing", nil, "at least one"},
		{"empty", []string{}, "at least one"},
		{"unknown service", []string{"openai", "imagegen"}, `"imagegen"`},
		{"first segment is not a service", []string{"v1"}, `"v1"`},
		{"single-segment route has no service", []string{"solo"}, `"solo"`},
		{"unknown tag", []string{"tag:ai", "tag:media"}, `"tag:media"`},
	}
	for _, tt := range refused {
		_, err := svc.CreateToken(ctx, dev, NewTokenInput{Name: "n", TeamID: "backend-team", Scopes: tt.scopes})
		if !errors.Is(err, errs.ErrInvalidArgument) {
			t.Errorf("create %s: err = %v, want invalid argument", tt.name, err)
			continue
		}
		require.Contains(t, err.Error(), tt.mention, tt.name)
	}
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.tokens`))

	c, err := svc.CreateToken(ctx, dev, NewTokenInput{Name: "ok", TeamID: "backend-team", Scopes: []string{"openai", "tag:ai", "*"}})
	require.NoError(t, err)
	require.Equal(t, []string{"openai", "tag:ai", "*"}, c.Scopes)
	for _, sc := range [][]string{{"*"}, {"openai"}, {"tag:ai"}} {
		_, err := svc.CreateToken(ctx, dev, NewTokenInput{Name: "ok", TeamID: "backend-team", Scopes: sc})
		require.NoError(t, err, sc)
	}

	// Update: an explicit empty list or an unknown scope is refused and
	// changes nothing; omitting scopes keeps them.
	for _, tt := range refused {
		if tt.scopes == nil {
			continue
		}
		_, err := svc.UpdateToken(ctx, mgr, c.ID, TokenPatch{Scopes: tt.scopes, ScopesSet: true})
		if !errors.Is(err, errs.ErrInvalidArgument) {
			t.Errorf("update %s: err = %v, want invalid argument", tt.name, err)
			continue
		}
		require.Contains(t, err.Error(), tt.mention, tt.name)
	}
	up, err := svc.UpdateToken(ctx, mgr, c.ID, TokenPatch{Name: ptr("renamed")})
	require.NoError(t, err)
	require.Equal(t, []string{"openai", "tag:ai", "*"}, up.Scopes)
	up, err = svc.UpdateToken(ctx, mgr, c.ID, TokenPatch{Scopes: []string{"tag:ai"}, ScopesSet: true})
	require.NoError(t, err)
	require.Equal(t, []string{"tag:ai"}, up.Scopes)
}
