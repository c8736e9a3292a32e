package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// stubResolver answers from a function, counting calls; gate, if set,
// holds every call until it is closed.
type stubResolver struct {
	calls  atomic.Int64
	gate   chan struct{}
	answer func(ctx context.Context, id string) (*auth.Principal, error)
}

func (s *stubResolver) ResolveUser(ctx context.Context, id string) (*auth.Principal, error) {
	return s.resolve(ctx, id)
}

func (s *stubResolver) ResolveAdminKey(ctx context.Context, hash string) (*auth.Principal, error) {
	return s.resolve(ctx, hash)
}

func (s *stubResolver) resolve(ctx context.Context, id string) (*auth.Principal, error) {
	s.calls.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.answer(ctx, id)
}

func found(_ context.Context, id string) (*auth.Principal, error) {
	return &auth.Principal{Kind: auth.KindUser, ID: id}, nil
}

func TestCachingResolverTTL(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	next := &stubResolver{answer: found}
	c := auth.NewCachingResolver(next, auth.CacheOptions{Clock: clock.Now})
	ctx := context.Background()

	for range 3 {
		p, err := c.ResolveUser(ctx, "user_1")
		if err != nil || p.ID != "user_1" {
			t.Fatalf("ResolveUser = %v, %v", p, err)
		}
	}
	if n := next.calls.Load(); n != 1 {
		t.Errorf("calls = %d, want 1 (cached)", n)
	}
	// Users and admin keys are cached apart even if the strings match.
	if _, err := c.ResolveAdminKey(ctx, "user_1"); err != nil {
		t.Fatal(err)
	}
	if n := next.calls.Load(); n != 2 {
		t.Errorf("calls = %d, want 2", n)
	}

	clock.Advance(5 * time.Second) // default TTL
	if _, err := c.ResolveUser(ctx, "user_1"); err != nil {
		t.Fatal(err)
	}
	if n := next.calls.Load(); n != 3 {
		t.Errorf("calls after TTL = %d, want 3", n)
	}
}

func TestCachingResolverNegative(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	var answer error = errs.NotFound("user not found") // lookups run on this goroutine
	next := &stubResolver{answer: func(context.Context, string) (*auth.Principal, error) {
		return nil, answer
	}}
	c := auth.NewCachingResolver(next, auth.CacheOptions{Clock: clock.Now})
	ctx := context.Background()

	for range 3 {
		if _, err := c.ResolveUser(ctx, "ghost"); !errors.Is(err, errs.ErrNotFound) {
			t.Fatalf("err = %v, want NotFound", err)
		}
	}
	if n := next.calls.Load(); n != 1 {
		t.Errorf("calls = %d, want 1 (not found is cached)", n)
	}
	clock.Advance(time.Second) // default negative TTL
	_, _ = c.ResolveUser(ctx, "ghost")
	if n := next.calls.Load(); n != 2 {
		t.Errorf("calls after negative TTL = %d, want 2", n)
	}

	// A remote "not found" is a NotFound status; it is cached the same way.
	answer = status.Error(codes.NotFound, "no such key")
	_, _ = c.ResolveAdminKey(ctx, "h")
	_, _ = c.ResolveAdminKey(ctx, "h")
	if n := next.calls.Load(); n != 3 {
		t.Errorf("calls = %d, want 3", n)
	}

	// Failures are not answers: they are never cached.
	answer = errors.New("team service down")
	_, _ = c.ResolveUser(ctx, "other")
	_, err := c.ResolveUser(ctx, "other")
	if err == nil || next.calls.Load() != 5 {
		t.Errorf("err = %v, calls = %d, want an error and 5 calls", err, next.calls.Load())
	}
}

func TestCachingResolverSharesConcurrentMisses(t *testing.T) {
	t.Parallel()
	next := &stubResolver{gate: make(chan struct{}), answer: found}
	c := auth.NewCachingResolver(next, auth.CacheOptions{})

	const callers = 50
	var wg sync.WaitGroup
	results := make(chan *auth.Principal, callers)
	for range callers {
		wg.Go(func() {
			p, err := c.ResolveUser(context.Background(), "user_1")
			if err != nil {
				t.Error(err)
			}
			results <- p
		})
	}
	// Let every caller reach the cache before the one lookup returns.
	for next.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(next.gate)
	wg.Wait()
	close(results)

	if n := next.calls.Load(); n != 1 {
		t.Errorf("calls = %d, want 1", n)
	}
	for p := range results {
		if p == nil || p.ID != "user_1" {
			t.Errorf("result = %v", p)
		}
	}
}

func TestCachingResolverLeaderCanceled(t *testing.T) {
	t.Parallel()
	next := &stubResolver{gate: make(chan struct{}), answer: found}
	c := auth.NewCachingResolver(next, auth.CacheOptions{})

	leaderCtx, cancel := context.WithCancel(context.Background())
	leaderDone := make(chan error)
	go func() {
		_, err := c.ResolveUser(leaderCtx, "user_1")
		leaderDone <- err
	}()
	for next.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	followerDone := make(chan error)
	go func() {
		_, err := c.ResolveUser(context.Background(), "user_1")
		followerDone <- err
	}()
	time.Sleep(20 * time.Millisecond)

	cancel() // the leader gives up; the follower must not inherit that
	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Errorf("leader err = %v", err)
	}
	close(next.gate)
	if err := <-followerDone; err != nil {
		t.Errorf("follower err = %v, want it to retry and succeed", err)
	}
}

func TestCachingResolverBounded(t *testing.T) {
	t.Parallel()
	next := &stubResolver{answer: found}
	c := auth.NewCachingResolver(next, auth.CacheOptions{MaxEntries: 10})
	ctx := context.Background()
	for i := range 100 {
		if _, err := c.ResolveUser(ctx, fmt.Sprint("user_", i)); err != nil {
			t.Fatal(err)
		}
	}
	// With at most 10 entries kept, revisiting all 100 misses at least 90.
	before := next.calls.Load()
	for i := range 100 {
		_, _ = c.ResolveUser(ctx, fmt.Sprint("user_", i))
	}
	if misses := next.calls.Load() - before; misses < 90 {
		t.Errorf("misses = %d, want ≥ 90 with MaxEntries 10", misses)
	}
}

func TestCachingResolverPanicDoesNotStrandWaiters(t *testing.T) {
	t.Parallel()
	next := &stubResolver{gate: make(chan struct{}), answer: func(context.Context, string) (*auth.Principal, error) {
		panic("boom")
	}}
	c := auth.NewCachingResolver(next, auth.CacheOptions{})

	go func() {
		defer func() { _ = recover() }()
		_, _ = c.ResolveUser(context.Background(), "user_1")
	}()
	for next.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	waiter := make(chan error)
	go func() {
		_, err := c.ResolveUser(context.Background(), "user_1")
		waiter <- err
	}()
	time.Sleep(20 * time.Millisecond)
	close(next.gate)
	select {
	case err := <-waiter:
		if err == nil {
			t.Error("waiter got no error from a panicked lookup")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter stranded")
	}
}

// TestCachingResolverNeverReusesGlobalAdmins: a person's global ADMIN role
// is looked up on every request (revoking it applies at once), while other
// people and admin keys, the global-ADMIN bootstrap key included, are
// cached as before.
func TestCachingResolverNeverReusesGlobalAdmins(t *testing.T) {
	t.Parallel()
	next := &stubResolver{answer: func(_ context.Context, id string) (*auth.Principal, error) {
		switch id {
		case "user_root":
			return &auth.Principal{Kind: auth.KindUser, ID: id, GlobalRole: auth.RoleAdmin}, nil
		case "key_hash":
			return &auth.Principal{Kind: auth.KindAdminKey, ID: "ak_1", GlobalRole: auth.RoleAdmin}, nil
		}
		return &auth.Principal{Kind: auth.KindUser, ID: id}, nil
	}}
	c := auth.NewCachingResolver(next, auth.CacheOptions{Clock: newFakeClock().Now})
	ctx := context.Background()
	for range 3 {
		if p, err := c.ResolveUser(ctx, "user_root"); err != nil || !p.IsGlobalAdmin() {
			t.Fatalf("user_root: %+v, %v", p, err)
		}
	}
	if n := next.calls.Load(); n != 3 {
		t.Fatalf("a global ADMIN was resolved %d times in 3 requests, want 3 (uncached)", n)
	}
	for range 3 {
		if _, err := c.ResolveUser(ctx, "user_dev"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ResolveAdminKey(ctx, "key_hash"); err != nil {
			t.Fatal(err)
		}
	}
	if n := next.calls.Load(); n != 5 {
		t.Fatalf("%d lookups, want 5: other people and admin keys stay cached", n)
	}
}
