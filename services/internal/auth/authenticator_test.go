package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

var serviceSecret = []byte("0123456789abcdef0123456789abcdef-test")

// principalHeader is how the test server tells the client whom it saw.
const principalHeader = "x-test-principal"

func describe(ctx context.Context) string {
	if p, ok := auth.FromContext(ctx); ok {
		return string(p.Kind) + ":" + p.ID
	}
	return "anonymous"
}

// startServer serves grpc.health.v1 on 127.0.0.1 behind a's interceptors,
// with List public and Check and Watch protected, and returns a client
// connection.
func startServer(t *testing.T, a *auth.Authenticator, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	echoPrincipal := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(principalHeader, describe(ctx)))
		return h(ctx, req)
	}
	echoPrincipalStream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		_ = ss.SetHeader(metadata.Pairs(principalHeader, describe(ss.Context())))
		return h(srv, ss)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(a.UnaryInterceptor(), echoPrincipal),
		grpc.ChainStreamInterceptor(a.StreamInterceptor(), echoPrincipalStream),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(),
		append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// countingResolver counts lookups, to prove that some credentials are
// rejected before any.
type countingResolver struct {
	auth.Resolver
	calls int
}

func (c *countingResolver) ResolveUser(ctx context.Context, id string) (*auth.Principal, error) {
	c.calls++
	return c.Resolver.ResolveUser(ctx, id)
}

func (c *countingResolver) ResolveAdminKey(ctx context.Context, h string) (*auth.Principal, error) {
	c.calls++
	return c.Resolver.ResolveAdminKey(ctx, h)
}

// failingResolver fails as a database or a downstream service would.
type failingResolver struct{}

func (failingResolver) ResolveUser(context.Context, string) (*auth.Principal, error) {
	return nil, errors.New(`dial tcp 10.0.0.7:5432: connection refused`)
}

func (failingResolver) ResolveAdminKey(context.Context, string) (*auth.Principal, error) {
	return nil, errors.New(`dial tcp 10.0.0.7:5432: connection refused`)
}

// forgeServiceCredential builds a credential by the documented format,
// independently of the package's code.
func forgeServiceCredential(secret []byte, service string, at time.Time) string {
	payload := fmt.Sprintf("%s.%d", service, at.Unix())
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(payload))
	return "tmsvc_" + payload + "." + hex.EncodeToString(m.Sum(nil))
}

func TestAuthenticatorOverGRPC(t *testing.T) {
	t.Parallel()
	fc := authtest.NewClerk(t)
	verifier, err := auth.NewClerkVerifier(fc.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	users := &authtest.Resolver{}
	users.AddUser(&auth.Principal{ID: "user_1", Email: "a@example.com"})
	key := users.AddAdminKey(&auth.Principal{ID: "key_1", GlobalRole: auth.RoleAdmin})
	revoked := users.AddAdminKey(&auth.Principal{ID: "key_2"})
	users.RevokeAdminKey(revoked)
	resolver := &countingResolver{Resolver: users}

	a := &auth.Authenticator{
		Verifier:      verifier,
		Resolver:      resolver,
		ServiceSecret: serviceSecret,
		Public:        map[string]bool{healthpb.Health_List_FullMethodName: true},
	}
	client := healthpb.NewHealthClient(startServer(t, a))

	badChecksum := []byte(key)
	badChecksum[len(badChecksum)-1] ^= 1 // still base62, checksum broken
	now := time.Now()

	tests := []struct {
		name     string
		authz    string // the authorization metadata value; "" sends none
		public   bool
		wantCode codes.Code
		wantMsg  string // for errors
		want     string // principal seen by the handler, for successes
		lookups  int    // resolver calls, -1 to not check
	}{
		{name: "public without credential", public: true, want: "anonymous", lookups: 0},
		{name: "public with credential stays anonymous", authz: "Bearer " + key, public: true, want: "anonymous", lookups: 0},
		{name: "missing credential", wantCode: codes.Unauthenticated, wantMsg: "Not authenticated: missing bearer credential", lookups: 0},
		{name: "empty bearer", authz: "Bearer ", wantCode: codes.Unauthenticated, wantMsg: "Not authenticated: missing bearer credential", lookups: 0},
		{name: "not bearer", authz: "Basic dXNlcjpwYXNz", wantCode: codes.Unauthenticated, wantMsg: "Not authenticated: expected a bearer credential", lookups: 0},
		{name: "session token", authz: "Bearer " + fc.SessionToken(t, "user_1"), want: "user:user_1", lookups: 1},
		{name: "scheme is case-insensitive", authz: "bearer " + fc.SessionToken(t, "user_1"), want: "user:user_1", lookups: 1},
		{name: "session token of unknown user", authz: "Bearer " + fc.SessionToken(t, "user_9"), wantCode: codes.Unauthenticated, wantMsg: "Not authenticated: unknown user", lookups: 1},
		{name: "expired session token", authz: "Bearer " + fc.SessionToken(t, "user_1", authtest.ExpiredFor(time.Minute)), wantCode: codes.Unauthenticated, wantMsg: "session token expired", lookups: 0},
		{name: "session token for another origin", authz: "Bearer " + fc.SessionToken(t, "user_1", authtest.AZP("https://evil.example")), wantCode: codes.Unauthenticated, wantMsg: "token not issued for an allowed origin", lookups: 0},
		{name: "admin key", authz: "Bearer " + key, want: "admin_key:key_1", lookups: 1},
		{name: "admin key with bad checksum", authz: "Bearer " + string(badChecksum), wantCode: codes.Unauthenticated, wantMsg: "invalid admin key", lookups: 0},
		{name: "unknown admin key", authz: "Bearer " + auth.NewAdminKey(), wantCode: codes.Unauthenticated, wantMsg: "invalid admin key", lookups: 1},
		{name: "revoked admin key", authz: "Bearer " + revoked, wantCode: codes.Unauthenticated, wantMsg: "invalid admin key", lookups: 1},
		{name: "service credential", authz: "Bearer " + auth.ServiceCredential(serviceSecret, "usage"), want: "service:usage", lookups: 0},
		{name: "service credential, documented format", authz: "Bearer " + forgeServiceCredential(serviceSecret, "audit", now), want: "service:audit", lookups: 0},
		{name: "service credential with another secret", authz: "Bearer " + auth.ServiceCredential([]byte("not-the-secret-not-the-secret-xx"), "usage"), wantCode: codes.Unauthenticated, wantMsg: "invalid service credential", lookups: 0},
		{name: "service credential renamed", authz: "Bearer " + strings.Replace(auth.ServiceCredential(serviceSecret, "usage"), "usage", "token", 1), wantCode: codes.Unauthenticated, wantMsg: "invalid service credential", lookups: 0},
		{name: "service credential expired", authz: "Bearer " + forgeServiceCredential(serviceSecret, "usage", now.Add(-6*time.Minute)), wantCode: codes.Unauthenticated, wantMsg: "service credential expired", lookups: 0},
		{name: "service credential from the future", authz: "Bearer " + forgeServiceCredential(serviceSecret, "usage", now.Add(5*time.Minute)), wantCode: codes.Unauthenticated, wantMsg: "service credential expired", lookups: 0},
		{name: "service credential garbage", authz: "Bearer tmsvc_usage", wantCode: codes.Unauthenticated, wantMsg: "invalid service credential", lookups: 0},
	}
	for _, tc := range tests {
		// Not parallel: the lookup count is shared.
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.authz != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tc.authz)
			}
			before := resolver.calls
			var header metadata.MD
			if tc.public {
				_, err = client.List(ctx, &healthpb.HealthListRequest{}, grpc.Header(&header))
			} else {
				_, err = client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header))
			}
			st := status.Convert(err)
			if st.Code() != tc.wantCode {
				t.Fatalf("code = %v (%q), want %v", st.Code(), st.Message(), tc.wantCode)
			}
			if tc.wantCode != codes.OK && st.Message() != tc.wantMsg {
				t.Errorf("message = %q, want %q", st.Message(), tc.wantMsg)
			}
			if tc.authz != "" && len(tc.authz) > 20 && strings.Contains(st.Message(), tc.authz[7:]) {
				t.Errorf("message %q echoes the credential", st.Message())
			}
			if tc.wantCode == codes.OK {
				if got := header.Get(principalHeader); len(got) != 1 || got[0] != tc.want {
					t.Errorf("principal = %v, want %s", got, tc.want)
				}
			}
			if tc.lookups >= 0 && resolver.calls-before != tc.lookups {
				t.Errorf("resolver calls = %d, want %d", resolver.calls-before, tc.lookups)
			}
		})
	}
}

func TestAuthenticatorStream(t *testing.T) {
	t.Parallel()
	users := &authtest.Resolver{}
	key := users.AddAdminKey(&auth.Principal{ID: "key_1"})
	client := healthpb.NewHealthClient(startServer(t, &auth.Authenticator{Resolver: users}))

	stream, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("Watch without credential: %v", err)
	}

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key)
	stream, err = client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v", resp, err)
	}
	header, err := stream.Header()
	if err != nil || header.Get(principalHeader)[0] != "admin_key:key_1" {
		t.Errorf("principal header = %v, %v", header, err)
	}
}

func TestAuthenticatorResolverFailure(t *testing.T) {
	t.Parallel()
	client := healthpb.NewHealthClient(startServer(t, &auth.Authenticator{Resolver: failingResolver{}}))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+auth.NewAdminKey())
	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("got %v %q, want Internal \"internal error\"", st.Code(), st.Message())
	}
}

func TestAuthenticatorWithoutVerifierOrSecret(t *testing.T) {
	t.Parallel()
	fc := authtest.NewClerk(t)
	client := healthpb.NewHealthClient(startServer(t, &auth.Authenticator{Resolver: &authtest.Resolver{}}))
	for _, cred := range []string{fc.SessionToken(t, "user_1"), auth.ServiceCredential(nil, "usage")} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+cred)
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%.12s…: %v, want Unauthenticated", cred, err)
		}
	}
}

func TestServiceCallCredentials(t *testing.T) {
	t.Parallel()
	creds := auth.ServiceCallCredentials{Secret: serviceSecret, Service: "usage"}
	if creds.RequireTransportSecurity() {
		t.Error("RequireTransportSecurity = true; services talk without TLS")
	}
	a := &auth.Authenticator{ServiceSecret: serviceSecret}
	conn := startServer(t, a, grpc.WithPerRPCCredentials(creds))
	var header metadata.MD
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if got := header.Get(principalHeader); len(got) != 1 || got[0] != "service:usage" {
		t.Errorf("principal = %v", got)
	}
}

func TestServiceCredentialClock(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := &auth.Authenticator{ServiceSecret: serviceSecret, Clock: clock.Now}
	cred := forgeServiceCredential(serviceSecret, "team", clock.Now())
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+cred))

	clock.Advance(auth.ServiceCredentialTTL)
	if p, err := a.Authenticate(ctx); err != nil || p.Kind != auth.KindService || p.ID != "team" {
		t.Fatalf("at TTL: %v, %v", p, err)
	}
	clock.Advance(time.Second)
	if _, err := a.Authenticate(ctx); err == nil {
		t.Fatal("accepted a credential older than its TTL")
	}
}
