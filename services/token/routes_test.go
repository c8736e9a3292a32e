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
	// KV publishes the secret under a name carrying its route's path, and
	// the routes map names exactly that.
	require.JSONEq(t, `{"value":"sk-proj-secret"}`, want["secret:/api/openai#OPENAI_API_KEY"])
	require.NotContains(t, want, "secret:OPENAI_API_KEY")
	require.JSONEq(t, `{"/api/openai":{"url":"https://api.openai.com/v1","tags":["ai","external"],"auth":{"type":"bearer","config":{"token_ref":"/api/openai#OPENAI_API_KEY"}}}}`, want["routes"])
	// The REST shape keeps the name the author chose (v2.7's edit form is
	// prefilled from it).
	require.Equal(t, map[string]any{"token_ref": "OPENAI_API_KEY"}, r.AuthConfig)

	// Issue 11, class 2: a route naming another route's secret, to send it
	// to its own host, is refused — it holds no such secret.
	thief := RouteInput{Name: "x", Path: "/api/x", BackendURL: "https://attacker.example", AuthType: "bearer",
		AuthConfig: map[string]any{"token_ref": "OPENAI_API_KEY"}}
	_, err = svc.CreateRoute(ctx, coreDev, thief)
	require.ErrorIs(t, err, errs.ErrInvalidArgument)
	require.Contains(t, err.Error(), "does not hold")
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.routes WHERE path = '/api/x'`))
	// A route giving its own value for the same name holds a different
	// secret, published under its own path; the first is untouched.
	other := RouteInput{Name: "Other", Path: "/api/other", BackendURL: "http://other.internal:8080", AuthType: "bearer",
		AuthConfig: map[string]any{"token_ref": "OPENAI_API_KEY"}, Secrets: map[string]string{"OPENAI_API_KEY": "other-value"}}
	o, err := svc.CreateRoute(ctx, coreDev, other)
	require.NoError(t, err)
	want = desired(t, svc)
	require.JSONEq(t, `{"value":"sk-proj-secret"}`, want["secret:/api/openai#OPENAI_API_KEY"])
	require.JSONEq(t, `{"value":"other-value"}`, want["secret:/api/other#OPENAI_API_KEY"])
	// Nor can an update point a route at a secret it does not hold.
	_, err = svc.UpdateRoute(ctx, coreMgr, o.ID, RoutePatch{AuthConfig: map[string]any{"token_ref": "SOMEONE_ELSES"}, AuthConfigSet: true})
	require.ErrorIs(t, err, errs.ErrInvalidArgument)
	_, err = svc.UpdateRoute(ctx, coreMgr, o.ID, RoutePatch{AuthType: ptr("basic"),
		AuthConfig: map[string]any{"username_ref": "OPENAI_API_KEY", "password_ref": "P"}, AuthConfigSet: true})
	require.ErrorIs(t, err, errs.ErrInvalidArgument)
	require.JSONEq(t, `{"value":"other-value"}`, desired(t, svc)["secret:/api/other#OPENAI_API_KEY"])
	// An edit that keeps the reference needs no value again.
	_, err = svc.UpdateRoute(ctx, coreMgr, o.ID, RoutePatch{Description: ptr("kept"),
		AuthConfig: map[string]any{"token_ref": "OPENAI_API_KEY"}, AuthConfigSet: true})
	require.NoError(t, err)

	// Update: DEVELOPER may not; renaming the reference drops the old secret.
	_, err = svc.UpdateRoute(ctx, coreDev, r.ID, RoutePatch{Name: ptr("x")})
	require.ErrorIs(t, err, errs.ErrPermissionDenied)
	up, err := svc.UpdateRoute(ctx, coreMgr, r.ID, RoutePatch{AuthConfig: map[string]any{"token_ref": "OPENAI_KEY_2"}, AuthConfigSet: true,
		Secrets: map[string]string{"OPENAI_KEY_2": "sk-2"}, Tags: []string{"ai"}, TagsSet: true})
	require.NoError(t, err)
	require.Equal(t, []string{"ai"}, up.Tags)
	want = desired(t, svc)
	require.NotContains(t, want, "secret:/api/openai#OPENAI_API_KEY")
	require.Contains(t, want, "secret:/api/openai#OPENAI_KEY_2")
	require.Contains(t, want, "secret:/api/other#OPENAI_API_KEY")
	_, err = svc.UpdateRoute(ctx, coreMgr, r.ID, RoutePatch{})
	require.ErrorIs(t, err, errs.ErrInvalidArgument)
	_, err = svc.UpdateRoute(ctx, coreMgr, 9999, RoutePatch{Name: ptr("x")})
	require.ErrorIs(t, err, errs.ErrNotFound)

	tags, err := svc.ListRouteTags(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"ai"}, tags) // /api/other has none

	// Delete: ADMIN only; its secrets leave KV.
	require.ErrorIs(t, svc.DeleteRoute(ctx, coreMgr, r.ID), errs.ErrPermissionDenied)
	require.NoError(t, svc.DeleteRoute(ctx, coreAdmin, r.ID))
	require.ErrorIs(t, svc.DeleteRoute(ctx, coreAdmin, r.ID), errs.ErrNotFound)
	want = desired(t, svc)
	require.NotContains(t, want, "secret:/api/openai#OPENAI_KEY_2")
	require.Contains(t, want, "secret:/api/other#OPENAI_API_KEY")
	require.NoError(t, svc.DeleteRoute(ctx, coreAdmin, o.ID))
	require.NotContains(t, desired(t, svc), "routes") // {} (see desired)
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.route_secrets`))
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
		"ref without a value": mod(func(r *RouteInput) { r.Secrets = nil }),
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
		AuthType: "api-key", AuthConfig: map[string]any{"key_ref": "INTERNAL_KEY", "header_name": "X-Internal-Key"},
		Secrets: map[string]string{"INTERNAL_KEY": "internal"}})
	require.NoError(t, err)
	require.Equal(t, "X-Internal-Key", r.AuthConfig["header_name"])
	_, err = svc.CreateRoute(ctx, globalAdmin, RouteInput{Name: "img", Path: "/api/image", BackendURL: "https://image.example.com"})
	require.NoError(t, err)
	var table map[string]map[string]any
	require.NoError(t, json.Unmarshal([]byte(desired(t, svc)["routes"]), &table))
	require.NotContains(t, table["/api/image"], "auth")
	require.Equal(t, []any{}, table["/api/image"]["tags"])
}
