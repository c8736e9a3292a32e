package auth

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	clerkjwt "github.com/clerk/clerk-sdk-go/v2/jwt"
	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// DefaultClerkAPIURL is Clerk's Backend API.
const DefaultClerkAPIURL = "https://api.clerk.com/v1"

const (
	defaultLeeway = 5 * time.Second
	// jwksRefetchInterval bounds how often an unknown kid may make us ask
	// Clerk for its keys again, so a flood of tokens with made-up kids
	// costs Clerk at most one request per interval.
	jwksRefetchInterval = 10 * time.Second
	// jwksMaxAge makes keys that Clerk has removed stop working eventually.
	jwksMaxAge   = time.Hour
	jwksTimeout  = 10 * time.Second
	signatureAlg = "RS256"
)

// Client-safe messages for rejecting a session token. None repeats any
// part of the token; the reason for the logs goes in the error's cause.
const (
	msgInvalidSession = "invalid session token"
	msgSessionExpired = "session token expired"
	msgOrigin         = "token not issued for an allowed origin"
)

func rejectSession(msg, reason string) error {
	return errs.Wrap(errors.New(reason), errs.ErrUnauthenticated, msg)
}

// Identity is what a verified Clerk session token says about its bearer.
type Identity struct {
	UserID    string // the token's sub
	SessionID string // the token's sid
}

// ClerkConfig configures a ClerkVerifier.
type ClerkConfig struct {
	// APIURL is the Clerk Backend API base (CLERK_API_URL); the keys are
	// fetched from APIURL + "/jwks". Default DefaultClerkAPIURL.
	APIURL string
	// SecretKey (CLERK_SECRET_KEY) authorises the JWKS request.
	SecretKey string
	// AllowedOrigins (ALLOWED_FRONTEND_ORIGINS) are the only accepted values
	// of the token's azp claim.
	AllowedOrigins []string
	// Leeway tolerates clock skew on exp, nbf and iat. Default 5s.
	Leeway time.Duration
	// Clock replaces time.Now, for tests.
	Clock func() time.Time
}

// ClerkVerifier verifies Clerk session JWTs (RS256) with keys fetched from
// Clerk's JWKS endpoint through the Clerk SDK and cached by kid.
type ClerkVerifier struct {
	client  *jwks.Client
	origins map[string]bool
	leeway  time.Duration
	now     func() time.Time

	mu        sync.Mutex
	keys      map[string]*clerk.JSONWebKey
	loadedAt  time.Time     // last successful fetch
	triedAt   time.Time     // last fetch attempt, successful or not
	inflight  chan struct{} // closed when the running fetch ends; nil if none
	lastFetch error         // outcome of the last fetch attempt
}

// NewClerkVerifier returns a verifier for cfg. Keys are fetched lazily, on
// the first token to verify.
func NewClerkVerifier(cfg ClerkConfig) (*ClerkVerifier, error) {
	apiURL := strings.TrimRight(cfg.APIURL, "/")
	if apiURL == "" {
		apiURL = DefaultClerkAPIURL
	}
	if u, err := url.Parse(apiURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("auth: invalid Clerk API URL %q", cfg.APIURL)
	}
	origins := make(map[string]bool, len(cfg.AllowedOrigins))
	for _, o := range cfg.AllowedOrigins {
		if o = normalizeOrigin(o); o != "" {
			origins[o] = true
		}
	}
	if len(origins) == 0 {
		return nil, errors.New("auth: no allowed origins for Clerk session tokens")
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = defaultLeeway
	}
	now := cfg.Clock
	if now == nil {
		now = time.Now
	}
	return &ClerkVerifier{
		client: jwks.NewClient(&clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
			URL: clerk.String(apiURL),
			Key: clerk.String(cfg.SecretKey),
		}}),
		origins: origins,
		leeway:  leeway,
		now:     now,
	}, nil
}

func normalizeOrigin(o string) string { return strings.TrimRight(strings.TrimSpace(o), "/") }

// Verify checks token's signature, lifetime, issuer, azp and sub, and
// returns who it was issued to. Errors are Unauthenticated domain errors
// with client-safe messages, or Unavailable when Clerk's keys cannot be
// fetched.
func (v *ClerkVerifier) Verify(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, rejectSession(msgInvalidSession, "empty token")
	}
	unverified, err := clerkjwt.Decode(ctx, &clerkjwt.DecodeParams{Token: token})
	if err != nil {
		return Identity{}, errs.Wrap(err, errs.ErrUnauthenticated, msgInvalidSession)
	}
	key, err := v.key(ctx, unverified.KeyID)
	if err != nil {
		return Identity{}, err
	}
	claims, err := clerkjwt.Verify(ctx, &clerkjwt.VerifyParams{
		Token:  token,
		JWK:    key,
		Clock:  clockFunc(v.now),
		Leeway: v.leeway,
	})
	switch {
	case errors.Is(err, josejwt.ErrExpired):
		return Identity{}, errs.Wrap(err, errs.ErrUnauthenticated, msgSessionExpired)
	case err != nil:
		return Identity{}, errs.Wrap(err, errs.ErrUnauthenticated, msgInvalidSession)
	case claims.Expiry == nil:
		// A session token without exp would never expire.
		return Identity{}, rejectSession(msgInvalidSession, "no exp claim")
	case claims.Subject == "":
		return Identity{}, rejectSession(msgInvalidSession, "no sub claim")
	case !v.origins[normalizeOrigin(claims.AuthorizedParty)]:
		return Identity{}, rejectSession(msgOrigin, fmt.Sprintf("azp %q is not an allowed origin", claims.AuthorizedParty))
	}
	return Identity{UserID: claims.Subject, SessionID: claims.SessionID}, nil
}

// key returns the verification key for kid, fetching Clerk's key set when
// kid is unknown or the set is old — at most once per jwksRefetchInterval,
// and once for all callers that need it at the same time.
func (v *ClerkVerifier) key(ctx context.Context, kid string) (*clerk.JSONWebKey, error) {
	if kid == "" {
		return nil, rejectSession(msgInvalidSession, "no kid header")
	}
	for {
		v.mu.Lock()
		now := v.now()
		key, known := v.keys[kid]
		if known && now.Sub(v.loadedAt) < jwksMaxAge {
			v.mu.Unlock()
			return key, nil
		}
		if wait := v.inflight; wait != nil {
			v.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if !v.triedAt.IsZero() && now.Sub(v.triedAt) < jwksRefetchInterval {
			fetchErr := v.lastFetch
			v.mu.Unlock()
			switch {
			case known: // old, but the best we have
				return key, nil
			case fetchErr != nil:
				return nil, errs.Wrap(fetchErr, errs.ErrUnavailable, "cannot verify session tokens right now")
			}
			return nil, rejectSession(msgInvalidSession, "unknown signing key")
		}
		done := make(chan struct{})
		v.inflight, v.triedAt = done, now
		v.mu.Unlock()

		keys, err := v.fetch(ctx)

		v.mu.Lock()
		if err == nil {
			v.keys, v.loadedAt = keys, v.now()
		}
		v.lastFetch, v.inflight = err, nil
		v.mu.Unlock()
		close(done)
	}
}

// fetch loads Clerk's key set, keeping the RS256 signing keys. It outlives
// a canceled caller because other callers may be waiting for it.
func (v *ClerkVerifier) fetch(ctx context.Context) (map[string]*clerk.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksTimeout)
	defer cancel()
	set, err := v.client.Get(ctx, &jwks.GetParams{})
	if err != nil {
		return nil, fmt.Errorf("fetch Clerk JWKS: %w", err)
	}
	keys := make(map[string]*clerk.JSONWebKey, len(set.Keys))
	for _, k := range set.Keys {
		if k == nil || k.KeyID == "" || k.Algorithm != signatureAlg || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if _, ok := k.Key.(*rsa.PublicKey); ok {
			keys[k.KeyID] = k
		}
	}
	return keys, nil
}

type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }
