// Package authtest provides test doubles for package auth that every
// service's tests can share: FakeClerk, a local HTTP server that speaks the
// parts of Clerk's Backend API the services use, so tests exercise the
// real clerk-sdk-go; and Resolver, an in-memory auth.Resolver.
package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
)

const (
	// DefaultOrigin is the azp of FakeClerk's session tokens unless a
	// token option says otherwise.
	DefaultOrigin = "http://localhost:5173"
	// SecretKey is the Clerk secret key FakeClerk requires on API calls.
	SecretKey = "sk_test_fakeclerk"
	// Issuer is the iss of FakeClerk's session tokens. The Clerk SDK only
	// accepts issuers that start with https://clerk. (or contain
	// .clerk.accounts).
	Issuer = "https://clerk.fake.test"
	// sessionLifetime is what Clerk gives a session token.
	sessionLifetime = time.Minute
)

// FakeClerk is a Clerk Backend API on a local httptest server. Create one
// per test with NewClerk; it is closed when the test ends.
type FakeClerk struct {
	srv *httptest.Server
	mux *http.ServeMux

	mu  sync.Mutex
	key signingKey // the key Clerk currently signs with and publishes

	jwksRequests atomic.Int64

	dir directory // users and invitations (clerk_backend.go)
}

type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

// NewClerk starts a FakeClerk.
func NewClerk(t testing.TB) *FakeClerk {
	t.Helper()
	fc := &FakeClerk{mux: http.NewServeMux(), key: newSigningKey()}
	fc.routes()
	fc.srv = httptest.NewServer(fc.mux)
	t.Cleanup(fc.srv.Close)
	return fc
}

// routes lists the Backend API endpoints FakeClerk serves.
func (fc *FakeClerk) routes() {
	fc.mux.Handle("GET /v1/jwks", fc.count(&fc.jwksRequests, fc.requireSecretKey(http.HandlerFunc(fc.handleJWKS))))
	fc.backendRoutes()
	fc.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found: "+r.Method+" "+r.URL.Path)
	})
}

// URL is the API base to use as CLERK_API_URL (it ends in /v1).
func (fc *FakeClerk) URL() string { return fc.srv.URL + "/v1" }

// KeyID is the kid of the current signing key.
func (fc *FakeClerk) KeyID() string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.key.kid
}

// VerifierConfig returns a ClerkConfig that trusts this FakeClerk and
// DefaultOrigin.
func (fc *FakeClerk) VerifierConfig() auth.ClerkConfig {
	return auth.ClerkConfig{APIURL: fc.URL(), SecretKey: SecretKey, AllowedOrigins: []string{DefaultOrigin}}
}

// RotateKey replaces the signing key with a new one under a new kid. The
// JWKS then publishes only the new key, so tokens signed before no longer
// verify once a verifier has refetched the set.
func (fc *FakeClerk) RotateKey() {
	k := newSigningKey()
	fc.mu.Lock()
	fc.key = k
	fc.mu.Unlock()
}

// JWKSRequests counts the GET /v1/jwks requests so far, rejected ones
// included.
func (fc *FakeClerk) JWKSRequests() int { return int(fc.jwksRequests.Load()) }

func (fc *FakeClerk) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	fc.mu.Lock()
	k := fc.key
	fc.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"keys": []jose.JSONWebKey{{
		Key:       &k.priv.PublicKey,
		KeyID:     k.kid,
		Algorithm: string(jose.RS256),
		Use:       "sig",
	}}})
}

// count counts the requests to next in n.
func (fc *FakeClerk) count(n *atomic.Int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		next.ServeHTTP(w, r)
	})
}

// requireSecretKey rejects calls without the secret key, as Clerk does.
func (fc *FakeClerk) requireSecretKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+SecretKey {
			writeError(w, http.StatusUnauthorized, "authentication_invalid", "invalid secret key")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// TokenOption adjusts a session token minted by SessionToken.
type TokenOption func(*tokenSpec)

type tokenSpec struct {
	now         time.Time
	expiredFor  time.Duration // > 0: exp is this long before now
	notValidFor time.Duration // > 0: nbf is this long after now
	claims      map[string]any
	signer      signingKey
}

// AZP sets the token's authorized party (the origin it was issued for).
func AZP(origin string) TokenOption { return Claims(map[string]any{"azp": origin}) }

// NoAZP leaves the azp claim out.
func NoAZP() TokenOption { return Claims(map[string]any{"azp": nil}) }

// ExpiredFor makes the token expire d before now.
func ExpiredFor(d time.Duration) TokenOption {
	return func(s *tokenSpec) { s.expiredFor = d }
}

// NotValidFor makes the token become valid only d after now.
func NotValidFor(d time.Duration) TokenOption {
	return func(s *tokenSpec) { s.notValidFor = d }
}

// IssuedAt mints the token as if now were at (for verifiers with a fake
// clock).
func IssuedAt(at time.Time) TokenOption { return func(s *tokenSpec) { s.now = at } }

// WrongKey signs the token with a key that is not Clerk's, under Clerk's
// current kid: its signature does not verify.
func WrongKey() TokenOption {
	return func(s *tokenSpec) { s.signer.priv = strangerKey() }
}

// UnknownKID signs the token with a key and kid that Clerk does not
// publish.
func UnknownKID() TokenOption {
	return func(s *tokenSpec) { s.signer = signingKey{kid: "ins_unknown_" + rand.Text(), priv: strangerKey()} }
}

// Claims sets claims, replacing defaults; a nil value removes the claim.
func Claims(claims map[string]any) TokenOption {
	return func(s *tokenSpec) { maps.Copy(s.claims, claims) }
}

// SessionToken mints a session token for userID as Clerk would: RS256 with
// the current key, iss Issuer, azp DefaultOrigin, a random sid, and a
// one-minute lifetime starting now.
func (fc *FakeClerk) SessionToken(t testing.TB, userID string, opts ...TokenOption) string {
	t.Helper()
	fc.mu.Lock()
	spec := tokenSpec{now: time.Now(), claims: map[string]any{}, signer: fc.key}
	fc.mu.Unlock()
	for _, o := range opts {
		o(&spec)
	}
	// Clerk backdates nbf by 10s to absorb clock skew.
	iat, nbf, exp := spec.now, spec.now.Add(-10*time.Second), spec.now.Add(sessionLifetime)
	if spec.expiredFor > 0 {
		exp = spec.now.Add(-spec.expiredFor)
		iat = exp.Add(-sessionLifetime)
		nbf = iat.Add(-10 * time.Second)
	}
	if spec.notValidFor > 0 {
		nbf = spec.now.Add(spec.notValidFor)
		exp = nbf.Add(sessionLifetime)
	}
	claims := map[string]any{
		"iss": Issuer,
		"sub": userID,
		"sid": "sess_" + rand.Text(),
		"azp": DefaultOrigin,
		"iat": iat.Unix(),
		"nbf": nbf.Unix(),
		"exp": exp.Unix(),
		"v":   2,
	}
	for k, v := range spec.claims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: spec.signer.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", spec.signer.kid))
	if err != nil {
		t.Fatalf("authtest: new signer: %v", err)
	}
	token, err := josejwt.Signed(signer).Claims(claims).CompactSerialize()
	if err != nil {
		t.Fatalf("authtest: sign token: %v", err)
	}
	return token
}

// newSigningKey returns an RSA key under a kid unique to it: the Clerk SDK
// caches keys by kid process-wide, so kids must never repeat across tests.
func newSigningKey() signingKey {
	return signingKey{kid: "ins_fake_" + rand.Text(), priv: newRSAKey()}
}

// strangerKey is an RSA key no FakeClerk publishes, shared because RSA key
// generation is slow and tests mint many tokens with foreign keys.
var strangerKey = sync.OnceValue(newRSAKey)

func newRSAKey() *rsa.PrivateKey {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("authtest: generate RSA key: " + err.Error()) // only with a broken crypto/rand
	}
	return priv
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in Clerk's error format.
func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]any{"errors": []map[string]string{{
		"code": errCode, "message": msg, "long_message": msg,
	}}})
}
