package team

import (
	"context"
	"errors"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

func TestCoreTeamIsSeeded(t *testing.T) {
	pool := dbtest.NewPool(t, Migrations)
	teams, err := teamsByID(context.Background(), pool, []string{"core-team", "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if len(teams) != 1 || teams[0].Name != "Core Team" || teams[0].CreatedBy != "system" || teams[0].Color != "#8b5cf6" {
		t.Fatalf("core-team: %+v", teams)
	}
}

func TestBootstrapKeyIsIdempotentAndRotates(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.NewPool(t, Migrations)
	key := auth.NewAdminKey()

	// Several replicas starting at once leave exactly one live key.
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- EnsureBootstrapKey(ctx, pool, key) }()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM team.admin_keys WHERE revoked_at IS NULL`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("live keys = %d (%v), want 1", n, err)
	}
	p, err := adminKeyPrincipal(ctx, pool, auth.HashKey(key))
	if err != nil || !p.IsGlobalAdmin() || p.Kind != auth.KindAdminKey {
		t.Fatalf("principal %+v, %v", p, err)
	}
	// The plaintext is not stored.
	var stored int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM team.admin_keys WHERE key_hash = $1 OR prefix = $1`, key).Scan(&stored)
	if stored != 0 {
		t.Fatal("plaintext key stored")
	}

	// Changing TM_BOOTSTRAP_ADMIN_KEY revokes the previous key.
	next := auth.NewAdminKey()
	if err := EnsureBootstrapKey(ctx, pool, next); err != nil {
		t.Fatal(err)
	}
	if _, err := adminKeyPrincipal(ctx, pool, auth.HashKey(key)); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("previous bootstrap key still resolves: %v", err)
	}
	if _, err := adminKeyPrincipal(ctx, pool, auth.HashKey(next)); err != nil {
		t.Errorf("new bootstrap key: %v", err)
	}
	if err := EnsureBootstrapKey(ctx, pool, "tmak_garbage"); err == nil {
		t.Error("malformed bootstrap key accepted")
	}
}

func TestUserPrincipal(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.NewPool(t, Migrations)
	p, err := userPrincipal(ctx, pool, "user_nobody")
	if err != nil || p.Kind != auth.KindUser || len(p.TeamRoles) != 0 || p.IsGlobalAdmin() {
		t.Fatalf("user without roles: %+v %v", p, err)
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO team.teams (id, name) VALUES ('backend-team', 'Backend Team');
		INSERT INTO team.memberships (user_id, team_id, role) VALUES ('user_a', 'core-team', 'MANAGER'), ('user_a', 'backend-team', 'VIEWER');
		INSERT INTO team.global_roles (user_id, role) VALUES ('user_a', 'ADMIN');`)
	if err != nil {
		t.Fatal(err)
	}
	p, err = userPrincipal(ctx, pool, "user_a")
	if err != nil {
		t.Fatal(err)
	}
	if p.RoleIn("core-team") != auth.RoleManager || p.RoleIn("backend-team") != auth.RoleViewer || !p.IsGlobalAdmin() {
		t.Errorf("roles %+v", p)
	}
	// The database refuses roles that do not exist.
	if _, err := pool.Exec(ctx, `INSERT INTO team.memberships (user_id, team_id, role) VALUES ('user_b', 'core-team', 'OWNER')`); err == nil {
		t.Error("invalid role stored")
	}
}

func TestGetPrincipalIsInternal(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.NewPool(t, Migrations)
	srv := NewServer(pool, Options{})
	key := auth.NewAdminKey()
	if err := EnsureBootstrapKey(ctx, pool, key); err != nil {
		t.Fatal(err)
	}
	req := &teamv1.GetPrincipalRequest{Credential: &teamv1.GetPrincipalRequest_AdminKeyHash{AdminKeyHash: auth.HashKey(key)}}

	// A person or an admin key may not ask who others are.
	user := auth.WithPrincipal(ctx, &auth.Principal{Kind: auth.KindUser, ID: "user_a"})
	if _, err := srv.GetPrincipal(user, req); status.Code(errs.ToStatus(ctx, nil, err)) != codes.PermissionDenied {
		t.Errorf("user caller: %v", err)
	}
	svc := auth.WithPrincipal(ctx, &auth.Principal{Kind: auth.KindService, ID: "token"})
	resp, err := srv.GetPrincipal(svc, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPrincipal().GetGlobalRole() != "ADMIN" || resp.GetPrincipal().GetKind() != teamv1.PrincipalKind_PRINCIPAL_KIND_ADMIN_KEY {
		t.Errorf("principal %+v", resp.GetPrincipal())
	}
	bad := []*teamv1.GetPrincipalRequest{
		{},
		{Credential: &teamv1.GetPrincipalRequest_UserId{UserId: ""}},
		{Credential: &teamv1.GetPrincipalRequest_AdminKeyHash{AdminKeyHash: "short"}},
	}
	for _, r := range bad {
		if _, err := srv.GetPrincipal(svc, r); status.Code(errs.ToStatus(ctx, nil, err)) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", r, err)
		}
	}
	unknown := &teamv1.GetPrincipalRequest{Credential: &teamv1.GetPrincipalRequest_AdminKeyHash{AdminKeyHash: auth.HashKey(auth.NewAdminKey())}}
	if _, err := srv.GetPrincipal(svc, unknown); status.Code(errs.ToStatus(ctx, nil, err)) != codes.NotFound {
		t.Errorf("unknown key: %v", err)
	}
}

func TestCountTeamsIsInternal(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.NewPool(t, Migrations)
	srv := NewServer(pool, Options{})
	svc := auth.WithPrincipal(ctx, &auth.Principal{Kind: auth.KindService, ID: "usage"})
	count := func() int64 {
		t.Helper()
		resp, err := srv.CountTeams(svc, &teamv1.CountTeamsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetTotal()
	}

	// People and admin keys, even global admins, use ListTeams, scoped to them.
	for _, p := range []*auth.Principal{
		{Kind: auth.KindUser, ID: "user_a", GlobalRole: auth.RoleAdmin},
		{Kind: auth.KindAdminKey, ID: "key_1", GlobalRole: auth.RoleAdmin},
	} {
		if _, err := srv.CountTeams(auth.WithPrincipal(ctx, p), &teamv1.CountTeamsRequest{}); status.Code(errs.ToStatus(ctx, nil, err)) != codes.PermissionDenied {
			t.Errorf("%s caller: %v, want PermissionDenied", p.Kind, err)
		}
	}
	if _, err := srv.CountTeams(ctx, &teamv1.CountTeamsRequest{}); err == nil {
		t.Error("caller without a principal: no error")
	}

	// Every team counts, with or without members or tokens: the seeded core-team too.
	if n := count(); n != 1 {
		t.Errorf("fresh schema: %d teams, want 1 (core-team)", n)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO team.teams (id, name) VALUES ('backend-team', 'Backend Team'), ('empty-team', 'Empty Team');
		INSERT INTO team.memberships (user_id, team_id, role) VALUES ('user_a', 'backend-team', 'VIEWER');`); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("%d teams, want 3", n)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM team.teams WHERE id = 'empty-team'`); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Errorf("after a deletion: %d teams, want 2", n)
	}
}
