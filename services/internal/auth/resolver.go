package auth

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Resolver turns an authenticated identity into a Principal with roles.
// The team service implements it on its own tables; other services use a
// gRPC client of the team service.
//
// Both methods return an error wrapping errs.ErrNotFound (or a NotFound
// gRPC status) when the user or key does not exist, or when the key is
// revoked or expired; other errors mean the answer is unknown.
type Resolver interface {
	ResolveUser(ctx context.Context, userID string) (*Principal, error)
	ResolveAdminKey(ctx context.Context, keyHash string) (*Principal, error)
}

// isNotFound reports whether a Resolver said "no such user or key".
func isNotFound(err error) bool {
	return errors.Is(err, errs.ErrNotFound) || status.Code(err) == codes.NotFound
}

// CacheOptions tune a CachingResolver. Zero values take the defaults.
type CacheOptions struct {
	// TTL is how long a resolved principal is reused (default 5s), and so
	// how long a role change or key revocation may take to apply. A person
	// holding the global ADMIN role is never reused, so revoking that role
	// applies at once.
	TTL time.Duration
	// NegativeTTL is how long "not found" is remembered (default 1s).
	NegativeTTL time.Duration
	// MaxEntries bounds the cache (default 10000).
	MaxEntries int
	// Clock replaces time.Now, for tests.
	Clock func() time.Time
}

// CachingResolver wraps a Resolver with a short-lived cache, so a burst of
// RPCs from one caller costs one lookup. Concurrent misses for the same key
// share one call to the wrapped Resolver. It is safe for concurrent use.
type CachingResolver struct {
	next   Resolver
	ttl    time.Duration
	negTTL time.Duration
	max    int
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
	flights map[string]*flight
}

type cacheEntry struct {
	p       *Principal
	err     error
	expires time.Time
}

// flight is one call to the wrapped Resolver that other callers wait for.
type flight struct {
	done chan struct{}
	p    *Principal
	err  error
}

var errResolverPanicked = errors.New("auth: resolver panicked")

// NewCachingResolver returns next wrapped in a cache tuned by opts.
func NewCachingResolver(next Resolver, opts CacheOptions) *CachingResolver {
	c := &CachingResolver{
		next:    next,
		ttl:     opts.TTL,
		negTTL:  opts.NegativeTTL,
		max:     opts.MaxEntries,
		now:     opts.Clock,
		entries: make(map[string]cacheEntry),
		flights: make(map[string]*flight),
	}
	if c.ttl <= 0 {
		c.ttl = 5 * time.Second
	}
	if c.negTTL <= 0 {
		c.negTTL = time.Second
	}
	if c.max <= 0 {
		c.max = 10000
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// ResolveUser implements Resolver.
func (c *CachingResolver) ResolveUser(ctx context.Context, userID string) (*Principal, error) {
	return c.resolve(ctx, "user:"+userID, func(ctx context.Context) (*Principal, error) {
		return c.next.ResolveUser(ctx, userID)
	})
}

// ResolveAdminKey implements Resolver.
func (c *CachingResolver) ResolveAdminKey(ctx context.Context, keyHash string) (*Principal, error) {
	return c.resolve(ctx, "key:"+keyHash, func(ctx context.Context) (*Principal, error) {
		return c.next.ResolveAdminKey(ctx, keyHash)
	})
}

func (c *CachingResolver) resolve(ctx context.Context, key string, load func(context.Context) (*Principal, error)) (*Principal, error) {
	for {
		c.mu.Lock()
		if e, ok := c.entries[key]; ok {
			if c.now().Before(e.expires) {
				c.mu.Unlock()
				return e.p, e.err
			}
			delete(c.entries, key)
		}
		f, waiting := c.flights[key]
		if !waiting {
			f = &flight{done: make(chan struct{})}
			c.flights[key] = f
		}
		c.mu.Unlock()

		if !waiting {
			c.load(ctx, key, f, load)
			return f.p, f.err
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// The caller that did the lookup gave up: its context error says
		// nothing about this caller, which tries again.
		if isContextError(f.err) && ctx.Err() == nil {
			continue
		}
		return f.p, f.err
	}
}

// load runs the lookup of flight f and publishes its outcome.
func (c *CachingResolver) load(ctx context.Context, key string, f *flight, load func(context.Context) (*Principal, error)) {
	defer func() {
		c.mu.Lock()
		delete(c.flights, key)
		switch {
		case f.err == nil && f.p.Kind == KindUser && f.p.IsGlobalAdmin():
			// Never reused: a person's global ADMIN role, once revoked,
			// must stop working at the next request, not a TTL later.
			// Global ADMINs are few, so this costs little.
		case f.err == nil:
			c.store(key, cacheEntry{p: f.p, expires: c.now().Add(c.ttl)})
		case isNotFound(f.err):
			c.store(key, cacheEntry{err: f.err, expires: c.now().Add(c.negTTL)})
		}
		c.mu.Unlock()
		close(f.done)
	}()
	f.err = errResolverPanicked // what waiters see if load panics
	f.p, f.err = load(ctx)
	if f.err == nil && f.p == nil {
		f.err = errs.NotFound("no principal")
	}
}

// store adds e; c.mu must be held. A full cache first drops expired
// entries and then, if still full, an arbitrary one.
func (c *CachingResolver) store(key string, e cacheEntry) {
	if len(c.entries) >= c.max {
		now := c.now()
		for k, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = e
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
