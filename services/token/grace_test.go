package token

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
)

// storedGraceEnd is tokens.rotation_grace_ends_at of token id.
func storedGraceEnd(t *testing.T, svc *Service, id int64) *time.Time {
	t.Helper()
	var v *time.Time
	require.NoError(t, svc.Pool.QueryRow(context.Background(), `SELECT rotation_grace_ends_at FROM token.tokens WHERE id = $1`, id).Scan(&v))
	return v
}

func listedGraceEnd(t *testing.T, svc *Service, id int64) *time.Time {
	t.Helper()
	list, err := svc.ListTokens(context.Background(), globalAdmin)
	require.NoError(t, err)
	for _, tk := range list {
		if tk.ID == id {
			return tk.GraceEndsAt
		}
	}
	t.Fatalf("token %d not listed", id)
	return nil
}

// TestGraceEndKeptOnToken: the grace end stored on the token follows every
// path that changes the token's secrets (rotate, sweep, revoke).
func TestGraceEndKeptOnToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	c, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "g", TeamID: "backend-team", Scopes: []string{"*"}})
	require.NoError(t, err)
	require.Nil(t, storedGraceEnd(t, svc, c.ID))
	require.Nil(t, listedGraceEnd(t, svc, c.ID))

	r1, err := svc.RotateToken(ctx, globalAdmin, c.ID, ptr(int32(3600)))
	require.NoError(t, err)
	require.WithinDuration(t, r1.PreviousValidUntil, *storedGraceEnd(t, svc, c.ID), time.Millisecond)
	require.WithinDuration(t, r1.PreviousValidUntil, *listedGraceEnd(t, svc, c.ID), time.Millisecond)
	require.WithinDuration(t, r1.PreviousValidUntil, *r1.GraceEndsAt, time.Millisecond)

	// A longer grace on the next rotation moves the end later…
	r2, err := svc.RotateToken(ctx, globalAdmin, c.ID, ptr(int32(7200)))
	require.NoError(t, err)
	require.WithinDuration(t, r2.PreviousValidUntil, *storedGraceEnd(t, svc, c.ID), time.Millisecond)
	// …a shorter one cuts every previous secret to it.
	r3, err := svc.RotateToken(ctx, globalAdmin, c.ID, ptr(int32(60)))
	require.NoError(t, err)
	require.WithinDuration(t, r3.PreviousValidUntil, *storedGraceEnd(t, svc, c.ID), time.Millisecond)
	require.Equal(t, 0, count(t, svc.Pool, `SELECT count(*) FROM token.token_secrets WHERE token_id = $1 AND valid_until > $2`, c.ID, r3.PreviousValidUntil.Add(time.Millisecond)))

	// The grace period ends: lists stop showing it at once, the sweep clears it.
	_, err = svc.Pool.Exec(ctx, `UPDATE token.token_secrets SET valid_until = now() - interval '1 second' WHERE token_id = $1 AND valid_until IS NOT NULL`, c.ID)
	require.NoError(t, err)
	_, err = svc.Pool.Exec(ctx, `UPDATE token.tokens SET rotation_grace_ends_at = now() - interval '1 second' WHERE id = $1`, c.ID)
	require.NoError(t, err)
	require.Nil(t, listedGraceEnd(t, svc, c.ID))
	n, err := svc.SweepExpired(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Nil(t, storedGraceEnd(t, svc, c.ID))

	// Rotation without grace leaves none; a revoke ends a running one.
	_, err = svc.RotateToken(ctx, globalAdmin, c.ID, ptr(int32(0)))
	require.NoError(t, err)
	require.Nil(t, storedGraceEnd(t, svc, c.ID))
	_, err = svc.RotateToken(ctx, globalAdmin, c.ID, nil)
	require.NoError(t, err)
	require.NotNil(t, storedGraceEnd(t, svc, c.ID))
	require.NoError(t, svc.DeleteToken(ctx, globalAdmin, c.ID))
	require.Nil(t, storedGraceEnd(t, svc, c.ID))
	r, err := svc.ResolveToken(ctx, HashToken(r1.Plaintext))
	require.NoError(t, err)
	require.Nil(t, r.Token.GraceEndsAt)
}

// TestRotateAndSweepDoNotDeadlock: rotations and sweeps of the same tokens
// run concurrently (both write the token row and its secrets).
func TestRotateAndSweepDoNotDeadlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	var ids []int64
	for range 4 {
		c, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "d", TeamID: "backend-team", Scopes: []string{"*"}})
		require.NoError(t, err)
		ids = append(ids, c.ID)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	for i := range 8 {
		wg.Go(func() {
			for j := range 6 {
				// Grace 0 makes every rotation leave work for the sweep.
				if _, err := svc.RotateToken(ctx, &auth.Principal{Kind: auth.KindAdminKey, ID: "k", GlobalRole: auth.RoleAdmin}, ids[(i+j)%len(ids)], ptr(int32(0))); err != nil {
					errc <- err
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := svc.SweepExpired(ctx); err != nil {
				errc <- err
			}
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
