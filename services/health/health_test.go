package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	healthv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/health/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
)

func TestOverall(t *testing.T) {
	ok := Result{Status: StatusHealthy}
	bad := Result{Status: StatusUnhealthy}
	skip := Result{Status: StatusSkipped}
	cases := []struct {
		name    string
		results map[string]Result
		want    string
	}{
		{"all healthy", map[string]Result{"database": ok, "clerk": ok, "token_service": ok}, "healthy"},
		{"skipped never degrades", map[string]Result{"database": ok, "clerk": skip, "cloudflare_kv": skip, "token_service": ok}, "healthy"},
		{"database down", map[string]Result{"database": bad, "token_service": ok}, "unhealthy"},
		{"one service down", map[string]Result{"database": ok, "token_service": bad, "team_service": ok}, "degraded"},
		{"every service down", map[string]Result{"database": ok, "token_service": bad, "team_service": bad}, "unhealthy"},
		{"clerk failing", map[string]Result{"database": ok, "clerk": bad, "token_service": ok}, "degraded"},
		{"kv warning", map[string]Result{"database": ok, "cloudflare_kv": {Status: StatusWarning}, "token_service": ok}, "degraded"},
	}
	for _, c := range cases {
		if got := Overall(c.results); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestDatabaseCheck(t *testing.T) {
	pool := dbtest.NewPool(t)
	if r := DatabaseCheck(pool)(context.Background()); r.Status != StatusHealthy {
		t.Errorf("live database: %+v", r)
	}
	if r := DatabaseCheck(nil)(context.Background()); r.Status != StatusSkipped {
		t.Errorf("no DATABASE_URL: %+v", r)
	}
	pool.Close()
	r := DatabaseCheck(pool)(context.Background())
	if r.Status != StatusUnhealthy || strings.Contains(r.Message, "127.0.0.1") {
		t.Errorf("closed pool: %+v", r)
	}
}

func TestClerkCheck(t *testing.T) {
	fc := authtest.NewClerk(t)
	hc := &http.Client{Timeout: time.Second}
	ctx := context.Background()

	r := ClerkCheck(app.ClerkConfig{APIURL: fc.URL(), SecretKey: authtest.SecretKey}, hc)(ctx)
	if r.Status != StatusHealthy {
		t.Errorf("configured: %+v", r)
	}
	r = ClerkCheck(app.ClerkConfig{APIURL: fc.URL()}, hc)(ctx)
	if r.Status != StatusSkipped || !strings.Contains(r.Message, "CLERK_SECRET_KEY") {
		t.Errorf("unconfigured: %+v", r)
	}
	r = ClerkCheck(app.ClerkConfig{APIURL: fc.URL(), SecretKey: "sk_test_wrong"}, hc)(ctx)
	if r.Status != StatusUnhealthy || strings.Contains(r.Message, "sk_test_wrong") {
		t.Errorf("wrong key: %+v", r)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	r = ClerkCheck(app.ClerkConfig{APIURL: down.URL + "/v1", SecretKey: authtest.SecretKey}, hc)(ctx)
	if r.Status != StatusUnhealthy || strings.Contains(r.Message, down.URL) {
		t.Errorf("unreachable: %+v", r)
	}
}

// fakeCloudflare answers the KV keys list the way Cloudflare's API does.
func fakeCloudflare(t *testing.T, status int) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/client/v4/accounts/acc/storage/kv/namespaces/ns/keys" || r.Header.Get("Authorization") != "Bearer cf-token" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}`))
			return
		}
		w.WriteHeader(status)
		if status != 200 {
			_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":10001,"message":"boom"}],"messages":[],"result":null}`))
			return
		}
		_, _ = w.Write([]byte(`{"success":true,"errors":[],"messages":[],"result":[{"name":"routes"}],"result_info":{"count":1,"cursor":""}}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestCloudflareCheck(t *testing.T) {
	hc := &http.Client{Timeout: time.Second}
	ctx := context.Background()
	okSrv, calls := fakeCloudflare(t, 200)
	cfg := app.CloudflareConfig{AccountID: "acc", APIToken: config.Secret("cf-token"), NamespaceID: "ns", BaseURL: okSrv.URL + "/client/v4"}
	if r := CloudflareCheck(cfg, hc)(ctx); r.Status != StatusHealthy || calls.Load() != 1 {
		t.Errorf("healthy KV: %+v (calls %d)", r, calls.Load())
	}
	bad := cfg
	bad.APIToken = "wrong-token"
	if r := CloudflareCheck(bad, hc)(ctx); r.Status != StatusUnhealthy || !strings.Contains(r.Message, "403") || strings.Contains(r.Message, "wrong-token") {
		t.Errorf("bad token: %+v", r)
	}
	failing, _ := fakeCloudflare(t, 500)
	cfg.BaseURL = failing.URL + "/client/v4"
	if r := CloudflareCheck(cfg, hc)(ctx); r.Status != StatusUnhealthy {
		t.Errorf("500: %+v", r)
	}
	if r := CloudflareCheck(app.CloudflareConfig{}, hc)(ctx); r.Status != StatusSkipped {
		t.Errorf("unconfigured: %+v", r)
	}
}

func TestServiceCheck(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()

	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if r := ServiceCheck(conn)(ctx); r.Status != StatusHealthy {
		t.Errorf("serving: %+v", r)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if r := ServiceCheck(conn)(ctx); r.Status != StatusUnhealthy {
		t.Errorf("not serving: %+v", r)
	}
	gs.Stop()
	if r := ServiceCheck(conn)(ctx); r.Status != StatusUnhealthy || strings.Contains(r.Message, "127.0.0.1") {
		t.Errorf("stopped: %+v", r)
	}
}

func TestDetailedHealthRunsChecksConcurrentlyWithTimeout(t *testing.T) {
	slow := func(ctx context.Context) Result {
		<-ctx.Done() // a hung dependency
		return Result{Status: StatusUnhealthy, Message: "timed out"}
	}
	s := NewServer(map[string]Check{
		"database":      func(context.Context) Result { return Result{Status: StatusHealthy, Message: "ok"} },
		"clerk":         slow,
		"cloudflare_kv": slow,
		"token_service": func(context.Context) Result { return Result{Status: StatusHealthy} },
	})
	start := time.Now()
	resp, err := s.GetDetailedHealth(context.Background(), &healthv1.GetDetailedHealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > checkTimeout+time.Second {
		t.Errorf("took %v: checks did not run concurrently", elapsed)
	}
	if resp.GetStatus() != "degraded" || resp.GetChecks()["clerk"].GetStatus() != StatusUnhealthy {
		t.Errorf("resp %+v", resp)
	}
	if resp.GetService() != "token-manager" || resp.GetTimestamp() == nil {
		t.Errorf("resp %+v", resp)
	}
}
