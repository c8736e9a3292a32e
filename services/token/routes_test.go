package token

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

func openAI() RouteInput {
	return RouteInput{Name: "OpenAI", Path: "/api/openai", BackendURL: "https://api.openai.com/v1", Tags: []string{"ai", "external"},
		AuthType: "bearer", AuthConfig: map[string]any{"token_ref": "OPENAI_API_KEY"}, Secrets: map[string]string{"OPENAI_API_KEY": "sk-proj-secret"}}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	coreDev := member("user_cd", "core-team", auth.RoleDeveloper)
	coreMgr := member("user_cm", "core-team", auth.RoleManager)
	coreAdmin := member("user_ca", "core-team", auth.RoleAdmin)

	_, err := svc.CreateRoute(ctx, outsider, openAI())
	require.ErrorIs(t, err, errs.ErrPermissionDenied)
	r, err := svc.CreateRoute(ctx, coreDev, openAI())
	require.NoError(t, err)
	_, err = svc.CreateRoute(ctx, coreDev, openAI())
	require.ErrorIs(t, err, errs.ErrAlreadyExists)

	// The secret is stored encrypted, pushed to KV, never in audit.
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.route_secrets WHERE ciphertext LIKE '%sk-proj%'`))
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.outbox WHERE payload::text LIKE '%sk-proj%'`))
	want := desired(t, svc)
	require.JSONEq(t, `{"value":"sk-proj-secret"}`, want["secret:OPENAI_API_KEY"])
	require.JSONEq(t, `{"/api/openai":{"url":"https://api.openai.com/v1","tags":["ai","external"],"auth":{"type":"bearer","config":{"token_ref":"OPENAI_API_KEY"}}}}`, want["routes"])

	// Another route cannot claim the name.
	other := RouteInput{Name: "Other", Path: "/api/other", BackendURL: "http://other.internal:8080", AuthType: "bearer",
		AuthConfig: map[string]any{"token_ref": "OPENAI_API_KEY"}, Secrets: map[string]string{"OPENAI_API_KEY": "stolen"}}
	_, err = svc.CreateRoute(ctx, coreDev, other)
	require.ErrorIs(t, err, errs.ErrAlreadyExists)
	require.JSONEq(t, `{"value":"sk-proj-secret"}`, desired(t, svc)["secret:OPENAI_API_KEY"])

	// Update: DEVELOPER may not; renaming the reference drops the old secret.
	_, err = svc.UpdateRoute(ctx, coreDev, r.ID, RoutePatch{Name: ptr("x")})
	require.ErrorIs(t, err, errs.ErrPermissionDenied)
	up, err := svc.UpdateRoute(ctx, coreMgr, r.ID, RoutePatch{AuthConfig: map[string]any{"token_ref": "OPENAI_KEY_2"}, AuthConfigSet: true,
		Secrets: map[string]string{"OPENAI_KEY_2": "sk-2"}, Tags: []string{"ai"}, TagsSet: true})
	require.NoError(t, err)
	require.Equal(t, []string{"ai"}, up.Tags)
	want = desired(t, svc)
	require.NotContains(t, want, "secret:OPENAI_API_KEY")
	require.Contains(t, want, "secret:OPENAI_KEY_2")
	_, err = svc.UpdateRoute(ctx, coreMgr, r.ID, RoutePatch{})
	require.ErrorIs(t, err, errs.ErrInvalidArgument)
	_, err = svc.UpdateRoute(ctx, coreMgr, 9999, RoutePatch{Name: ptr("x")})
	require.ErrorIs(t, err, errs.ErrNotFound)

	tags, err := svc.ListRouteTags(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"ai"}, tags)

	// Delete: ADMIN only; its secrets leave KV.
	require.ErrorIs(t, svc.DeleteRoute(ctx, coreMgr, r.ID), errs.ErrPermissionDenied)
	require.NoError(t, svc.DeleteRoute(ctx, coreAdmin, r.ID))
	require.ErrorIs(t, svc.DeleteRoute(ctx, coreAdmin, r.ID), errs.ErrNotFound)
	want = desired(t, svc)
	require.NotContains(t, want, "secret:OPENAI_KEY_2")
	require.NotContains(t, want, "routes") // {} (see desired)
	// Now the name is free again.
	_, err = svc.CreateRoute(ctx, coreDev, other)
	require.NoError(t, err)
}

func TestRouteBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	mod := func(f func(*RouteInput)) RouteInput { in := openAI(); f(&in); return in }
	bad := map[string]RouteInput{
		"no leading slash":    mod(func(r *RouteInput) { r.Path = "api/x" }),
		"dot dot":             mod(func(r *RouteInput) { r.Path = "/api/../admin" }),
		"trailing slash":      mod(func(r *RouteInput) { r.Path = "/api/x/" }),
		"double slash":        mod(func(r *RouteInput) { r.Path = "/api//x" }),
		"root":                mod(func(r *RouteInput) { r.Path = "/" }),
		"query":               mod(func(r *RouteInput) { r.Path = "/api/x?a=1" }),
		"long path":           mod(func(r *RouteInput) { r.Path = "/" + strings.Repeat("a", 255) }),
		"relative url":        mod(func(r *RouteInput) { r.BackendURL = "api.example.com" }),
		"ftp url":             mod(func(r *RouteInput) { r.BackendURL = "ftp://example.com" }),
		"javascript url":      mod(func(r *RouteInput) { r.BackendURL = "javascript:alert(1)" }),
		"credentials in url":  mod(func(r *RouteInput) { r.BackendURL = "https://u:p@example.com" }),
		"bad auth type":       mod(func(r *RouteInput) { r.AuthType = "custom" }),
		"missing ref":         mod(func(r *RouteInput) { r.AuthConfig = map[string]any{} }),
		"bad ref name":        mod(func(r *RouteInput) { r.AuthConfig = map[string]any{"token_ref": "a/b"} }),
		"unknown config key":  mod(func(r *RouteInput) { r.AuthConfig["x"] = "y" }),
		"number ref":          mod(func(r *RouteInput) { r.AuthConfig = map[string]any{"token_ref": 5.0} }),
		"unreferenced secret": mod(func(r *RouteInput) { r.Secrets = map[string]string{"OTHER": "v"} }),
		"empty secret":        mod(func(r *RouteInput) { r.Secrets = map[string]string{"OPENAI_API_KEY": ""} }),
		"basic missing pass": mod(func(r *RouteInput) {
			r.AuthType = "basic"
			r.AuthConfig = map[string]any{"username_ref": "U"}
			r.Secrets = nil
		}),
		"forbidden header": mod(func(r *RouteInput) {
			r.AuthType = "api-key"
			r.AuthConfig = map[string]any{"key_ref": "K", "header_name": "Host"}
			r.Secrets = nil
		}),
		"none with config": mod(func(r *RouteInput) { r.AuthType = "none"; r.Secrets = nil }),
		"bad tag":          mod(func(r *RouteInput) { r.Tags = []string{"a b"} }),
		"empty name":       mod(func(r *RouteInput) { r.Name = "" }),
	}
	for name, in := range bad {
		if _, err := svc.CreateRoute(ctx, globalAdmin, in); !errors.Is(err, errs.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		} else if strings.Contains(err.Error(), "sk-proj") {
			t.Errorf("%s: error echoes the secret", name)
		}
	}
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.routes`))
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.route_secrets`))
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.outbox`))

	// api-key and basic round-trip; none without config.
	r, err := svc.CreateRoute(ctx, globalAdmin, RouteInput{Name: "i", Path: "/api/intern", BackendURL: "https://internal.example.com",
		AuthType: "api-key", AuthConfig: map[string]any{"key_ref": "INTERNAL_KEY", "header_name": "X-Internal-Key"}})
	require.NoError(t, err)
	require.Equal(t, "X-Internal-Key", r.AuthConfig["header_name"])
	_, err = svc.CreateRoute(ctx, globalAdmin, RouteInput{Name: "img", Path: "/api/image", BackendURL: "https://image.example.com"})
	require.NoError(t, err)
	var table map[string]map[string]any
	require.NoError(t, json.Unmarshal([]byte(desired(t, svc)["routes"]), &table))
	require.NotContains(t, table["/api/image"], "auth")
	require.Equal(t, []any{}, table["/api/image"]["tags"])
}
