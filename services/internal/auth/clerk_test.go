package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// fakeClock is a settable clock for verifiers and caches.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// newFakeClock starts at a whole second, as credentials and JWTs count.
func newFakeClock() *fakeClock { return &fakeClock{now: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newVerifier(t *testing.T, fc *authtest.FakeClerk, clock func() time.Time) *auth.ClerkVerifier {
	t.Helper()
	cfg := fc.VerifierConfig()
	cfg.Clock = clock
	v, err := auth.NewClerkVerifier(cfg)
	if err != nil {
		t.Fatalf("NewClerkVerifier: %v", err)
	}
	return v
}

// wantReject checks that err is Unauthenticated with the client message
// msg, and that neither that message nor the full error (which is logged)
// repeats any part of token.
func wantReject(t *testing.T, err error, msg, token string) {
	t.Helper()
	var de *errs.Error
	if !errors.As(err, &de) || de.Kind != errs.ErrUnauthenticated {
		t.Fatalf("err = %v, want an Unauthenticated domain error", err)
	}
	if de.Msg != msg {
		t.Errorf("message = %q, want %q", de.Msg, msg)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) > 8 && strings.Contains(err.Error(), part) {
			t.Errorf("error %q repeats part of the token", err)
		}
	}
}

func TestClerkVerifierAcceptsValidToken(t *testing.T) {
	t.Parallel()
	fc := authtest.NewClerk(t)
	v := newVerifier(t, fc, nil)

	id, err := v.Verify(context.Background(), fc.SessionToken(t, "user_123"))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.UserID != "user_123" || !strings.HasPrefix(id.SessionID, "sess_") {
		t.Errorf("identity = %+v", id)
	}
}

func TestClerkVerifierRejects(t *testing.T) {
	t.Parallel()
	fc := authtest.NewClerk(t)
	v := newVerifier(t, fc, nil) // leeway: default 5s

	hs256 := func() string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
			(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", fc.KeyID()))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := josejwt.Signed(signer).Claims(map[string]any{
			"iss": authtest.Issuer, "sub": "user_1", "azp": authtest.DefaultOrigin,
			"exp": time.Now().Add(time.Minute).Unix(),
		}).CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	tests := []struct {
		name  string
		token string
		msg   string
	}{
		{"expired beyond leeway", fc.SessionToken(t, "user_1", authtest.ExpiredFor(30*time.Second)), "session token expired"},
		{"not yet valid", fc.SessionToken(t, "user_1", authtest.NotValidFor(time.Minute)), "invalid session token"},
		{"foreign azp", fc.SessionToken(t, "user_1", authtest.AZP("https://evil.example")), "token not issued for an allowed origin"},
		{"missing azp", fc.SessionToken(t, "user_1", authtest.NoAZP()), "token not issued for an allowed origin"},
		{"bad signature", fc.SessionToken(t, "user_1", authtest.WrongKey()), "invalid session token"},
		{"unknown kid", fc.SessionToken(t, "user_1", authtest.UnknownKID()), "invalid session token"},
		{"foreign issuer", fc.SessionToken(t, "user_1", authtest.Claims(map[string]any{"iss": "https://evil.example"})), "invalid session token"},
		{"missing sub", fc.SessionToken(t, "", authtest.Claims(map[string]any{"sub": nil})), "invalid session token"},
		{"missing exp", fc.SessionToken(t, "user_1", authtest.Claims(map[string]any{"exp": nil})), "invalid session token"},
		{"HS256 under Clerk's kid", hs256(), "invalid session token"},
		{"not a JWT", "definitely-not-a-jwt", "invalid session token"},
		{"empty", "", "invalid session token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(context.Background(), tc.token)
			wantReject(t, err, tc.msg, tc.token)
		})
	}
}

func TestClerkVerifierLeeway(t *testing.T) {
	t.Parallel()
	fc := authtest.NewClerk(t)
	clock := newFakeClock()
	v := newVerifier(t, fc, clock.Now)
	at := authtest.IssuedAt(clock.Now())

	// exp is in whole seconds, so stay a second clear of the 5s boundary.
	if _, err := v.Verify(context.Background(), fc.SessionToken(t, "user_1", at, authtest.ExpiredFor(3*time.Second))); err != nil {
		t.Errorf("expired within leeway: %v", err)
	}
	tok := fc.SessionToken(t, "user_1", at, authtest.ExpiredFor(7*time.Second))
	_, err := v.Verify(context.Background(), tok)
	wantReject(t, err, "session token expired", tok)

	if _, err := v.Verify(context.Background(), fc.SessionToken(t, "user_1", at, authtest.NotValidFor(3*time.Second))); err != nil {
		t.Errorf("not yet valid within leeway: %v", err)
	}
}

func TestClerkVerifierOriginsNormalized(t *testing.T) {
	t.Parallel()
	fc := authtest.NewClerk(t)
	cfg := fc.VerifierConfig()
	cfg.AllowedOrigins = []string{" https://token.blocktempo.ai/ ", ""}
	v, err := auth.NewClerkVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), fc.SessionToken(t, "u", authtest.AZP("https://token.blocktempo.ai"))); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestNewClerkVerifierConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]auth.ClerkConfig{
		"no origins":  {APIURL: "https://api.clerk.com/v1"},
		"bad api url": {APIURL: "api.clerk.com", AllowedOrigins: []string{"http://localhost:5173"}},
	} {
		if _, err := auth.NewClerkVerifier(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := auth.NewClerkVerifier(auth.ClerkConfig{AllowedOrigins: []string{"http://localhost:5173"}}); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestClerkVerifierCachesKeys(t *testing.T) {
	t.Parallel()
	fc := authtest.NewClerk(t)
	v := newVerifier(t, fc, nil)
	tok := fc.SessionToken(t, "user_1")

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
	wg.Wait()
	if n := fc.JWKSRequests(); n != 1 {
		t.Errorf("JWKS fetched %d times for 50 verifications, want 1", n)
	}
}

func TestClerkVerifierRefetchesOnUnknownKID(t *testing.T) {
	t.Parallel()
	fc := authtest.NewClerk(t)
	clock := newFakeClock()
	v := newVerifier(t, fc, clock.Now)
	ctx := context.Background()

	old := fc.SessionToken(t, "user_1", authtest.IssuedAt(clock.Now()))
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	// Clerk rotates its key; the new kid makes the verifier fetch once,
	// however many callers see it at the same time.
	clock.Advance(15 * time.Second)
	fc.RotateKey()
	rotated := fc.SessionToken(t, "user_1", authtest.IssuedAt(clock.Now()))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := v.Verify(ctx, rotated); err != nil {
				t.Errorf("Verify after rotation: %v", err)
			}
		})
	}
	wg.Wait()
	if n := fc.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS requests = %d, want 2", n)
	}
	// The old key is gone from the set that was fetched.
	_, err := v.Verify(ctx, old)
	wantReject(t, err, "invalid session token", old)

	// A flood of made-up kids does not reach Clerk more than once per
	// refetch interval.
	for range 100 {
		bogus := fc.SessionToken(t, "user_1", authtest.IssuedAt(clock.Now()), authtest.UnknownKID())
		if _, err := v.Verify(ctx, bogus); err == nil {
			t.Fatal("token with unknown kid accepted")
		}
	}
	if n := fc.JWKSRequests(); n != 2 {
		t.Errorf("JWKS requests after bogus kids = %d, want still 2", n)
	}
	clock.Advance(15 * time.Second)
	for range 10 {
		_, _ = v.Verify(ctx, fc.SessionToken(t, "user_1", authtest.IssuedAt(clock.Now()), authtest.UnknownKID()))
	}
	if n := fc.JWKSRequests(); n != 3 {
		t.Errorf("JWKS requests one interval later = %d, want 3", n)
	}
}

func TestClerkVerifierUnavailable(t *testing.T) {
	t.Parallel()
	fc := authtest.NewClerk(t)
	cfg := fc.VerifierConfig()
	cfg.SecretKey = "sk_test_wrong" // Clerk answers 401
	v, err := auth.NewClerkVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), fc.SessionToken(t, "user_1"))
	if !errors.Is(err, errs.ErrUnavailable) {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	// Failed fetches are rate-limited too.
	_, _ = v.Verify(context.Background(), fc.SessionToken(t, "user_1"))
	if n := fc.JWKSRequests(); n != 1 {
		t.Errorf("JWKS requests = %d, want 1", n)
	}
}
