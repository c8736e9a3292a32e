package token

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/token/keyring"
	"github.com/tokenmanager/tokenmanager/services/token/store"
)

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	dev := member("user_dev", "backend-team", auth.RoleDeveloper)
	mgr := member("user_mgr", "backend-team", auth.RoleManager)
	otherDev := member("user_dev2", "backend-team", auth.RoleDeveloper)
	// The scopes below must name a route's service segment and tag.
	_, err := svc.CreateRoute(ctx, globalAdmin, RouteInput{Name: "Image", Path: "/api/image", BackendURL: "https://img.example.com",
		Tags: []string{"media"}, AuthType: "none"})
	require.NoError(t, err)

	c, err := svc.CreateToken(ctx, dev, NewTokenInput{Name: "n8n", TeamID: "backend-team", Description: "pipeline",
		Scopes: []string{"image", "tag:media", "image"}, ExpiresDays: ptr(int32(90))})
	require.NoError(t, err)
	require.Equal(t, FormatV3, ParseToken(c.Plaintext))
	require.Equal(t, []string{"image", "tag:media"}, c.Scopes)
	require.WithinDuration(t, time.Now().Add(90*24*time.Hour), *c.ExpiresAt, time.Minute)

	// Stored: hash and ciphertext only, never the plaintext.
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.token_secrets WHERE ciphertext LIKE '%'||$1||'%'`, c.Plaintext))
	require.Equal(t, 1, count(t, svc.Pool, `SELECT count(*) FROM token.token_secrets WHERE hash = $1`, HashToken(c.Plaintext)))
	require.Equal(t, 1, count(t, svc.Pool, `SELECT count(*) FROM token.outbox WHERE topic = 'kv' AND key = $1`, "token:"+HashToken(c.Plaintext)))
	require.Equal(t, 1, count(t, svc.Pool, `SELECT count(*) FROM token.outbox WHERE topic = 'audit' AND payload->>'action' = 'create' AND payload->>'entityType' = 'token'`))

	// KV value: contract §3.2.
	want := desired(t, svc)["token:"+HashToken(c.Plaintext)]
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(want), &v))
	require.Equal(t, "n8n", v["name"])
	require.Equal(t, "backend-team", v["team_id"])
	require.Equal(t, []any{"image", "tag:media"}, v["scopes"])
	require.NotContains(t, v["created_at"], "Z")
	require.NotNil(t, v["expires_at"])

	list, err := svc.ListTokens(ctx, otherDev)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "active", list[0].Status(time.Now()))
	require.Equal(t, Preview(c.Plaintext), list[0].Preview)
	list, err = svc.ListTokens(ctx, outsider)
	require.NoError(t, err)
	require.Empty(t, list)

	// Reveal: creator and MANAGER yes, another DEVELOPER and outsiders no.
	for _, p := range []*auth.Principal{dev, mgr, globalAdmin} {
		got, err := svc.RevealToken(ctx, p, c.ID)
		require.NoError(t, err)
		require.Equal(t, c.Plaintext, got)
	}
	for _, p := range []*auth.Principal{otherDev, service} {
		_, err := svc.RevealToken(ctx, p, c.ID)
		require.ErrorIs(t, err, errs.ErrPermissionDenied)
	}
	// Outside the caller's teams a token is not found: a refusal must not
	// tell who owns the id. Every action by id answers alike.
	_, err = svc.RevealToken(ctx, outsider, c.ID)
	require.ErrorIs(t, err, errs.ErrNotFound)
	_, err = svc.RotateToken(ctx, outsider, c.ID, nil)
	require.ErrorIs(t, err, errs.ErrNotFound)
	require.ErrorIs(t, svc.DeleteToken(ctx, outsider, c.ID), errs.ErrNotFound)
	_, err = svc.UpdateToken(ctx, outsider, c.ID, TokenPatch{Name: ptr("x")})
	require.ErrorIs(t, err, errs.ErrNotFound)
	require.Equal(t, 3, count(t, svc.Pool, `SELECT count(*) FROM token.outbox WHERE topic = 'audit' AND payload->>'action' = 'reveal'`))
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.outbox WHERE payload::text LIKE '%'||$1||'%'`, c.Plaintext))

	// Update: MANAGER only; scopes change re-syncs KV.
	_, err = svc.UpdateToken(ctx, dev, c.ID, TokenPatch{Name: ptr("x")})
	require.ErrorIs(t, err, errs.ErrPermissionDenied)
	up, err := svc.UpdateToken(ctx, mgr, c.ID, TokenPatch{Scopes: []string{"*"}, ScopesSet: true})
	require.NoError(t, err)
	require.Equal(t, []string{"*"}, up.Scopes)
	_, err = svc.UpdateToken(ctx, mgr, c.ID, TokenPatch{})
	require.ErrorIs(t, err, errs.ErrInvalidArgument)

	// Revoke: soft delete, KV removal enqueued, history still resolves.
	require.ErrorIs(t, svc.DeleteToken(ctx, dev, c.ID), errs.ErrPermissionDenied)
	require.NoError(t, svc.DeleteToken(ctx, mgr, c.ID))
	require.ErrorIs(t, svc.DeleteToken(ctx, mgr, c.ID), errs.ErrNotFound)
	list, _ = svc.ListTokens(ctx, globalAdmin)
	require.Empty(t, list)
	require.NotContains(t, desired(t, svc), "token:"+HashToken(c.Plaintext))
	r, err := svc.ResolveToken(ctx, HashToken(c.Plaintext))
	require.NoError(t, err)
	require.Equal(t, "revoked", r.Status)
	require.Equal(t, c.ID, r.Token.ID)
	_, err = svc.RevealToken(ctx, mgr, c.ID)
	require.ErrorIs(t, err, errs.ErrNotFound)
}

func TestCreateTokenBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	dev := member("user_dev", "backend-team", auth.RoleDeveloper)
	viewer := member("user_v", "backend-team", auth.RoleViewer)
	ok := NewTokenInput{Name: "n", TeamID: "backend-team", Scopes: []string{"*"}}
	mod := func(f func(*NewTokenInput)) NewTokenInput { in := ok; f(&in); return in }
	tests := []struct {
		name string
		p    *auth.Principal
		in   NewTokenInput
		kind error
	}{
		{"empty name", dev, mod(func(i *NewTokenInput) { i.Name = " " }), errs.ErrInvalidArgument},
		{"long name", dev, mod(func(i *NewTokenInput) { i.Name = strings.Repeat("a", 256) }), errs.ErrInvalidArgument},
		{"control chars", dev, mod(func(i *NewTokenInput) { i.Name = "a\x00b" }), errs.ErrInvalidArgument},
		{"long description", dev, mod(func(i *NewTokenInput) { i.Description = strings.Repeat("a", 501) }), errs.ErrInvalidArgument},
		{"bad scope", dev, mod(func(i *NewTokenInput) { i.Scopes = []string{"Image/../x"} }), errs.ErrInvalidArgument},
		{"bad tag scope", dev, mod(func(i *NewTokenInput) { i.Scopes = []string{"tag:"} }), errs.ErrInvalidArgument},
		{"expires 0", dev, mod(func(i *NewTokenInput) { i.ExpiresDays = ptr(int32(0)) }), errs.ErrInvalidArgument},
		{"expires 3651", dev, mod(func(i *NewTokenInput) { i.ExpiresDays = ptr(int32(3651)) }), errs.ErrInvalidArgument},
		{"bad team id", dev, mod(func(i *NewTokenInput) { i.TeamID = "Bad Team" }), errs.ErrInvalidArgument},
		{"unknown team", globalAdmin, mod(func(i *NewTokenInput) { i.TeamID = "ghost-team" }), errs.ErrInvalidArgument},
		{"viewer", viewer, ok, errs.ErrPermissionDenied},
		{"other team", outsider, ok, errs.ErrPermissionDenied},
		{"service", service, ok, errs.ErrPermissionDenied},
	}
	for _, tt := range tests {
		_, err := svc.CreateToken(ctx, tt.p, tt.in)
		if !errors.Is(err, tt.kind) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.kind)
		}
	}
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.tokens`))
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.outbox`))
	// Default: no expiry → never.
	c, err := svc.CreateToken(ctx, dev, NewTokenInput{Name: "n", TeamID: "backend-team", Scopes: []string{"*"}})
	require.NoError(t, err)
	require.Equal(t, []string{"*"}, c.Scopes)
	require.Nil(t, c.ExpiresAt)
}

func TestRevealLegacyFernetToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	const legacy = "ntk_Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ6iGqTy5VwXk"
	ct, err := keyring.SealLegacy(testKey, []byte(legacy))
	require.NoError(t, err)
	var id int64
	require.NoError(t, svc.Pool.QueryRow(ctx, `INSERT INTO token.tokens (name, team_id, scopes, created_by) VALUES ('old', 'backend-team', '{*}', 'user_x') RETURNING id`).Scan(&id))
	_, err = svc.Pool.Exec(ctx, `INSERT INTO token.token_secrets (hash, token_id, ciphertext) VALUES ($1, $2, $3)`, HashToken(legacy), id, ct)
	require.NoError(t, err)
	got, err := svc.RevealToken(ctx, globalAdmin, id)
	require.NoError(t, err)
	require.Equal(t, legacy, got)
	r, err := svc.ResolveToken(ctx, "e666cc3a8ac612f730b4b328d2ca70505d4fac1cb79a109a0d481ccc50d1f87b")
	require.NoError(t, err)
	require.Equal(t, id, r.Token.ID)

	// A KV-imported token without ciphertext cannot be revealed: 400, not 500.
	require.NoError(t, svc.Pool.QueryRow(ctx, `INSERT INTO token.tokens (name, team_id, scopes) VALUES ('imp', 'backend-team', '{*}') RETURNING id`).Scan(&id))
	_, err = svc.Pool.Exec(ctx, `INSERT INTO token.token_secrets (hash, token_id) VALUES ($1, $2)`, strings.Repeat("a", 64), id)
	require.NoError(t, err)
	_, err = svc.RevealToken(ctx, globalAdmin, id)
	require.ErrorIs(t, err, errs.ErrInvalidArgument)
}

func TestRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	mgr := member("user_mgr", "backend-team", auth.RoleManager)
	c, err := svc.CreateToken(ctx, mgr, NewTokenInput{Name: "r", TeamID: "backend-team", Scopes: []string{"*"}})
	require.NoError(t, err)
	oldHash := HashToken(c.Plaintext)

	_, err = svc.RotateToken(ctx, member("user_dev", "backend-team", auth.RoleDeveloper), c.ID, nil)
	require.ErrorIs(t, err, errs.ErrPermissionDenied)
	_, err = svc.RotateToken(ctx, mgr, c.ID, ptr(int32(-1)))
	require.ErrorIs(t, err, errs.ErrInvalidArgument)
	_, err = svc.RotateToken(ctx, mgr, c.ID, ptr(int32(maxGraceSeconds+1)))
	require.ErrorIs(t, err, errs.ErrInvalidArgument)

	rot, err := svc.RotateToken(ctx, mgr, c.ID, nil)
	require.NoError(t, err)
	require.NotEqual(t, c.Plaintext, rot.Plaintext)
	require.WithinDuration(t, time.Now().Add(24*time.Hour), rot.PreviousValidUntil, time.Minute)
	for _, h := range []string{oldHash, HashToken(rot.Plaintext)} {
		r, err := svc.ResolveToken(ctx, h)
		require.NoError(t, err)
		require.Equal(t, c.ID, r.Token.ID)
		require.Equal(t, "active", r.Status)
	}
	want := desired(t, svc)
	require.Contains(t, want, "token:"+oldHash)
	require.Contains(t, want["token:"+oldHash], `"previous_secret":true`)
	require.Contains(t, want, "token:"+HashToken(rot.Plaintext))
	revealed, err := svc.RevealToken(ctx, mgr, c.ID)
	require.NoError(t, err)
	require.Equal(t, rot.Plaintext, revealed)
	list, _ := svc.ListTokens(ctx, mgr)
	require.NotNil(t, list[0].GraceEndsAt)

	// Grace end passes: the sweep removes the old secret from KV, once.
	_, err = svc.Pool.Exec(ctx, `UPDATE token.token_secrets SET valid_until = now() - interval '1 second' WHERE hash = $1`, oldHash)
	require.NoError(t, err)
	n, err := svc.SweepExpired(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, _ = svc.SweepExpired(ctx)
	require.Zero(t, n)
	require.NotContains(t, desired(t, svc), "token:"+oldHash)

	// Rotation with no grace: the previous secret stops at once.
	rot2, err := svc.RotateToken(ctx, mgr, c.ID, ptr(int32(0)))
	require.NoError(t, err)
	want = desired(t, svc)
	require.NotContains(t, want, "token:"+HashToken(rot.Plaintext))
	require.Contains(t, want, "token:"+HashToken(rot2.Plaintext))
}

func TestExpiryAndInternalRPCs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	c, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "e", TeamID: "backend-team", Scopes: []string{"*"}, ExpiresDays: ptr(int32(1))})
	require.NoError(t, err)
	c2, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "f", TeamID: "media-team", Scopes: []string{"*"}, ExpiresDays: ptr(int32(10))})
	require.NoError(t, err)
	h := HashToken(c.Plaintext)

	// last_used only moves forward.
	t1 := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	n, err := svc.RecordTokenUse(ctx, map[string]time.Time{h: t1, "nope": t1})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, _ = svc.RecordTokenUse(ctx, map[string]time.Time{h: t1.Add(-time.Minute)})
	require.Zero(t, n)
	r, _ := svc.ResolveToken(ctx, h)
	require.True(t, r.Token.LastUsed.Equal(t1))

	refs, err := svc.LookupTokens(ctx, []int64{c2.ID}, []string{h})
	require.NoError(t, err)
	require.Len(t, refs, 2)

	st, err := svc.TokenStats(ctx, StatsQuery{All: true})
	require.NoError(t, err)
	require.EqualValues(t, 2, st.Total)
	require.Len(t, st.Trend, 7)
	require.EqualValues(t, 2, st.Trend[6].Count)
	require.Len(t, st.Expiring, 2)
	st, _ = svc.TokenStats(ctx, StatsQuery{Teams: []string{"media-team"}})
	require.EqualValues(t, 1, st.Total)

	// Expire c: listed as expired, removed from KV by the sweep.
	_, err = svc.Pool.Exec(ctx, `UPDATE token.tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, c.ID)
	require.NoError(t, err)
	list, _ := svc.ListTokens(ctx, globalAdmin)
	statuses := map[int64]string{}
	for _, tk := range list {
		statuses[tk.ID] = tk.Status(time.Now())
	}
	require.Equal(t, "expired", statuses[c.ID])
	require.NotContains(t, desired(t, svc), "token:"+h)
	n, _ = svc.SweepExpired(ctx)
	require.Equal(t, 1, n)
	require.Equal(t, 2, count(t, svc.Pool, `SELECT count(*) FROM token.outbox WHERE topic = 'kv' AND key = $1`, "token:"+h)) // create, expiry
}

// TestEachTokenReadsWhatListTokensReads: the hand-written scan of
// store.EachToken (the list without collecting rows) gives exactly the rows
// of the generated ListTokens, for tokens of every kind: expiring, in a
// grace period, described, revoked (not listed).
func TestEachTokenReadsWhatListTokensReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	days := int32(3)
	for i, in := range []NewTokenInput{
		{Name: "plain", TeamID: "backend-team", Scopes: []string{"*"}},
		{Name: "expiring", TeamID: "media-team", Scopes: []string{"*"}, ExpiresDays: &days, Description: "d"},
		{Name: "rotated", TeamID: "backend-team", Scopes: []string{"*"}},
		{Name: "revoked", TeamID: "backend-team", Scopes: []string{"*"}},
	} {
		c, err := svc.CreateToken(ctx, globalAdmin, in)
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 2:
			if _, err := svc.RotateToken(ctx, globalAdmin, c.ID, ptr(int32(3600))); err != nil {
				t.Fatal(err)
			}
		case 3:
			if err := svc.DeleteToken(ctx, globalAdmin, c.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	arg := store.ListTokensParams{AllTeams: true}
	want, err := queries.ListTokens(ctx, svc.Pool, arg)
	if err != nil {
		t.Fatal(err)
	}
	var got []*store.TokenRow
	if err := queries.EachToken(ctx, svc.Pool, arg, func(r *store.TokenRow) error {
		c := *r
		got = append(got, &c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(want) != 3 {
		t.Fatalf("%d rows, ListTokens %d; want 3", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(*got[i], store.TokenRow(*want[i])) {
			t.Errorf("row %d:\n EachToken  %+v\n ListTokens %+v", i, *got[i], *want[i])
		}
	}
	if !got[0].InGrace && !got[1].InGrace && !got[2].InGrace {
		t.Error("no row in a grace period: the rotated token's in_grace was not read")
	}
}
