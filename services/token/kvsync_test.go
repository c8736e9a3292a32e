package token

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/cftest"
)

func TestKVSyncBasic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	rig := newKVRig(t, svc)
	c, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "a", TeamID: "backend-team", Scopes: []string{"*"}})
	require.NoError(t, err)
	_, err = svc.CreateRoute(ctx, globalAdmin, openAI())
	require.NoError(t, err)
	waitSynced(t, rig, 5*time.Second)
	require.Contains(t, rig.fake.KV(), "token:"+HashToken(c.Plaintext))
	require.JSONEq(t, `{"value":"sk-proj-secret"}`, string(rig.fake.KV()["secret:/api/openai#OPENAI_API_KEY"]))

	require.NoError(t, svc.DeleteToken(ctx, globalAdmin, c.ID))
	waitSynced(t, rig, 5*time.Second)
	require.NotContains(t, rig.fake.KV(), "token:"+HashToken(c.Plaintext))
}

// TestKVSyncUnderFaults: every kind of Cloudflare failure, while tokens are
// created and revoked; once the faults stop KV equals PostgreSQL and no
// revoked token is left in KV.
func TestKVSyncUnderFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	rig := newKVRig(t, svc)
	var n atomic.Int64
	var rateLimited atomic.Int64
	rig.fake.SetFaults(func(r cftest.Request) cftest.Fault {
		switch n.Add(1) % 6 {
		case 1:
			rateLimited.Add(1)
			return cftest.Fault{Kind: cftest.RateLimit, RetryAfter: 1}
		case 0:
			return cftest.Fault{Kind: cftest.ServerError}
		case 2:
			return cftest.Fault{Kind: cftest.Drop}
		case 3:
			return cftest.Fault{Kind: cftest.DropAfterApply}
		case 4:
			return cftest.Fault{Kind: cftest.Slow, Delay: 3 * time.Second} // beyond the 2s client timeout
		}
		return cftest.Fault{}
	})
	var revoked []string
	for i := range 20 {
		c, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: fmt.Sprintf("t%d", i), TeamID: "backend-team", Scopes: []string{"*"}})
		require.NoError(t, err)
		if i%2 == 0 {
			require.NoError(t, svc.DeleteToken(ctx, globalAdmin, c.ID))
			revoked = append(revoked, "token:"+HashToken(c.Plaintext))
		}
		// Give the relay a chance to push some and fail some.
		time.Sleep(10 * time.Millisecond)
	}
	// Keep failing until every kind of fault was served twice.
	deadline := time.Now().Add(20 * time.Second)
	for n.Load() < 12 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	rig.fake.SetFaults(nil)
	waitSynced(t, rig, 15*time.Second)
	kv := rig.fake.KV()
	for _, k := range revoked {
		require.NotContains(t, kv, k, "a revoked token is still in KV")
	}
	require.Len(t, kv, 10)
	require.Positive(t, rateLimited.Load())
	require.Positive(t, rig.syncer.Client.Gate.Pauses())
}

// TestKVRelayResumesAfterKill stops the relay with work queued; a new one
// finishes it.
func TestKVRelayResumesAfterKill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	rig := newKVRig(t, svc)
	rig.fake.SetFaults(func(cftest.Request) cftest.Fault { return cftest.Fault{Kind: cftest.ServerError} })
	for i := range 10 {
		_, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: fmt.Sprintf("t%d", i), TeamID: "backend-team", Scopes: []string{"*"}})
		require.NoError(t, err)
	}
	time.Sleep(100 * time.Millisecond)
	rig.stop()
	require.Empty(t, rig.fake.KV())
	require.Equal(t, 10, count(t, svc.Pool, `SELECT count(*) FROM token.outbox WHERE topic = 'kv'`))
	rig.fake.SetFaults(nil)
	rig.start(t)
	waitSynced(t, rig, 10*time.Second)
	require.Len(t, rig.fake.KV(), 10)
}

// Test50ConcurrentRouteEdits: the final routes value equals the database,
// and the routes key was written far fewer than 50 times (coalesced).
func Test50ConcurrentRouteEdits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	rig := newKVRig(t, svc)
	admin := member("user_ca", "core-team", auth.RoleAdmin)
	var ids []int64
	for i := range 5 {
		r, err := svc.CreateRoute(ctx, admin, RouteInput{Name: "r", Path: fmt.Sprintf("/api/s%d", i), BackendURL: "https://b.example.com"})
		require.NoError(t, err)
		ids = append(ids, r.ID)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			url := fmt.Sprintf("https://b%d.example.com", i)
			tags := []string{fmt.Sprintf("t%d", rand.N(5))}
			_, err := svc.UpdateRoute(ctx, admin, ids[i%len(ids)], RoutePatch{BackendURL: &url, Tags: tags, TagsSet: true})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitSynced(t, rig, 15*time.Second)
	writes := 0
	for _, r := range rig.fake.Requests() {
		for _, k := range r.Keys {
			if k == "routes" && r.Status == 200 {
				writes++
			}
		}
	}
	require.Less(t, writes, 20, "routes writes were not coalesced")
}

// TestReconcilerRepairsDrift: keys changed, added and removed behind the
// service's back are repaired; keys it does not own are left alone.
func TestReconcilerRepairsDrift(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	rig := newKVRig(t, svc)
	c, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "a", TeamID: "backend-team", Scopes: []string{"*"}})
	require.NoError(t, err)
	_, err = svc.CreateRoute(ctx, globalAdmin, openAI())
	require.NoError(t, err)
	waitSynced(t, rig, 5*time.Second)

	rig.fake.Delete("token:" + HashToken(c.Plaintext))                  // missing
	rig.fake.Put("routes", []byte(`{"/api/evil":"https://evil.test"}`)) // stale
	rig.fake.Put("token:"+HashToken("ntk_resurrected"), []byte(`{}`))   // no source
	rig.fake.Put("health-check", []byte(`x`))                           // not ours
	rig.fake.Put("other:key", []byte(`y`))                              // not ours
	drift, err := rig.syncer.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, drift)
	deadline := time.Now().Add(5 * time.Second)
	for {
		kv := kvStrings(rig.fake)
		delete(kv, "health-check")
		delete(kv, "other:key")
		if mapsEqual(kv, desired(t, svc)) {
			break
		}
		require.True(t, time.Now().Before(deadline), "drift not repaired")
		time.Sleep(20 * time.Millisecond)
	}
	require.Contains(t, rig.fake.KV(), "health-check")
	require.Zero(t, count(t, svc.Pool, `SELECT count(*) FROM token.tokens WHERE name <> 'a'`), "KV was copied into PostgreSQL")
	drift, err = rig.syncer.Reconcile(ctx)
	require.NoError(t, err)
	require.Zero(t, drift)
	st, _ := rig.syncer.Status(ctx)
	require.False(t, st.LastReconcileAt.IsZero())
}

// TestStatusReportsTheReconcileInterval: the health service judges a late
// reconcile by the period the token service really runs with.
func TestStatusReportsTheReconcileInterval(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rig := newKVRig(t, newService(t))
	st, err := rig.syncer.Status(ctx)
	require.NoError(t, err)
	require.Zero(t, st.ReconcileInterval, "no reconciler running yet")
	done := make(chan struct{})
	go func() { rig.syncer.RunReconciler(ctx, 7*time.Minute); close(done) }()
	require.Eventually(t, func() bool {
		st, err := rig.syncer.Status(ctx)
		return err == nil && st.ReconcileInterval == 7*time.Minute && !st.LastReconcileAt.IsZero()
	}, 10*time.Second, 20*time.Millisecond)
	cancel()
	<-done
}
