package health

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
)

// fakeTokenService answers GetSyncStatus with whatever the test sets.
type fakeTokenService struct {
	tokenv1.UnimplementedTokenServiceServer
	resp  atomic.Pointer[tokenv1.GetSyncStatusResponse]
	calls atomic.Int64
}

func (f *fakeTokenService) GetSyncStatus(context.Context, *tokenv1.GetSyncStatusRequest) (*tokenv1.GetSyncStatusResponse, error) {
	f.calls.Add(1)
	return f.resp.Load(), nil
}

// serveTokenService runs f on a real gRPC listener and returns a client
// connection and a function that stops the server.
func serveTokenService(t *testing.T, f *fakeTokenService) (tokenv1.TokenServiceClient, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	tokenv1.RegisterTokenServiceServer(gs, f)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tokenv1.NewTokenServiceClient(conn), gs.Stop
}

func TestCloudflareCheckWithSyncStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	apiOK := func(context.Context) Result {
		return Result{Status: StatusHealthy, Message: "Cloudflare KV connection successful"}
	}
	apiDown := func(context.Context) Result {
		return Result{Status: StatusUnhealthy, Message: "Cloudflare KV check failed: HTTP 500"}
	}
	fresh := func() *tokenv1.GetSyncStatusResponse {
		return &tokenv1.GetSyncStatusResponse{KvConfigured: true, OutboxDepth: 0, OldestPendingAge: durationpb.New(0),
			LastReconcileAt: timestamppb.New(now.Add(-2 * time.Minute)), LastReconcileDrift: 3}
	}
	cases := []struct {
		name       string
		api        Check
		resp       func(*tokenv1.GetSyncStatusResponse)
		wantStatus string
		wantInMsg  string
	}{
		{"in sync", apiOK, nil, StatusHealthy, "successful"},
		{"changes pending, young", apiOK, func(r *tokenv1.GetSyncStatusResponse) {
			r.OutboxDepth, r.OldestPendingAge = 12, durationpb.New(59*time.Second)
		}, StatusHealthy, ""},
		{"oldest pending change older than 60 s", apiOK, func(r *tokenv1.GetSyncStatusResponse) {
			r.OutboxDepth, r.OldestPendingAge = 4, durationpb.New(61*time.Second)
		}, StatusWarning, "oldest for 61s"},
		{"reconcile within twice the default interval (not reported)", apiOK, func(r *tokenv1.GetSyncStatusResponse) {
			r.LastReconcileAt = timestamppb.New(now.Add(-29 * time.Minute))
		}, StatusHealthy, ""},
		{"reconcile older than twice the default interval (not reported)", apiOK, func(r *tokenv1.GetSyncStatusResponse) {
			r.LastReconcileAt = timestamppb.New(now.Add(-31 * time.Minute))
		}, StatusWarning, "last reconcile 31m0s ago"},
		{"reconcile within twice the reported interval", apiOK, func(r *tokenv1.GetSyncStatusResponse) {
			r.ReconcileInterval, r.LastReconcileAt = durationpb.New(5*time.Minute), timestamppb.New(now.Add(-9*time.Minute))
		}, StatusHealthy, ""},
		{"reconcile older than twice the reported interval", apiOK, func(r *tokenv1.GetSyncStatusResponse) {
			r.ReconcileInterval, r.LastReconcileAt = durationpb.New(5*time.Minute), timestamppb.New(now.Add(-11*time.Minute))
		}, StatusWarning, "last reconcile 11m0s ago"},
		{"never reconciled yet", apiOK, func(r *tokenv1.GetSyncStatusResponse) { r.LastReconcileAt = nil }, StatusHealthy, ""},
		{"deliveries failing", apiOK, func(r *tokenv1.GetSyncStatusResponse) {
			r.DeliveryFailures, r.LastError = 7, "bulk delete: cloudflare: rate limited"
		}, StatusWarning, "KV sync failing"},
		{"failed before, delivering again", apiOK, func(r *tokenv1.GetSyncStatusResponse) { r.DeliveryFailures = 7 }, StatusHealthy, ""},
		{"token service has sync disabled", apiOK, func(r *tokenv1.GetSyncStatusResponse) {
			r.KvConfigured, r.LastError = false, "Cloudflare KV is not configured: sync disabled"
		}, StatusWarning, "sync disabled"},
		{"API down stays unhealthy", apiDown, func(r *tokenv1.GetSyncStatusResponse) {
			r.OutboxDepth, r.OldestPendingAge = 4, durationpb.New(5*time.Minute)
		}, StatusUnhealthy, "HTTP 500; 4 KV changes pending"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeTokenService{}
			resp := fresh()
			if c.resp != nil {
				c.resp(resp)
			}
			f.resp.Store(resp)
			client, _ := serveTokenService(t, f)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			r := WithSyncStatus(c.api, client, clock)(ctx)
			if r.Status != c.wantStatus || !strings.Contains(r.Message, c.wantInMsg) {
				t.Errorf("got %q %q, want %q containing %q", r.Status, r.Message, c.wantStatus, c.wantInMsg)
			}
			want := map[string]string{
				"outbox_depth": "0", "oldest_pending_age_s": "0", "delivery_failures": "0",
				"last_reconcile_at": "2026-01-02T11:58:00Z", "last_reconcile_drift": "3", "last_error": "",
			}
			if c.name == "in sync" {
				for k, v := range want {
					if got, ok := r.Details[k]; !ok || got != v {
						t.Errorf("details[%s] = %q (present %v), want %q", k, got, ok, v)
					}
				}
			}
			for k := range want {
				if _, ok := r.Details[k]; !ok {
					t.Errorf("details lacks %s: %v", k, r.Details)
				}
			}
		})
	}
}

func TestSyncDetailsReportTheState(t *testing.T) {
	now := time.Now()
	f := &fakeTokenService{}
	f.resp.Store(&tokenv1.GetSyncStatusResponse{KvConfigured: true, OutboxDepth: 42, OldestPendingAge: durationpb.New(90500 * time.Millisecond),
		DeliveryFailures: 5, LastError: strings.Repeat("e", 500)})
	client, _ := serveTokenService(t, f)
	r := WithSyncStatus(func(context.Context) Result { return Result{Status: StatusHealthy} }, client, func() time.Time { return now })(context.Background())
	if r.Details["outbox_depth"] != "42" || r.Details["oldest_pending_age_s"] != "90" || r.Details["delivery_failures"] != "5" ||
		r.Details["last_reconcile_at"] != "" || len(r.Details["last_error"]) > maxLastErrorLen+len("…") {
		t.Errorf("details %v", r.Details)
	}
	if r.Status != StatusWarning {
		t.Errorf("status %q", r.Status)
	}
}

func TestSyncStatusSkippedAndUnreachable(t *testing.T) {
	f := &fakeTokenService{}
	f.resp.Store(&tokenv1.GetSyncStatusResponse{KvConfigured: true})
	client, stop := serveTokenService(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()

	// Cloudflare not configured for health: skipped, whatever the token service says.
	skipped := CloudflareCheck(cfgUnconfigured(), nil)
	if r := WithSyncStatus(skipped, client, time.Now)(ctx); r.Status != StatusSkipped || len(r.Details) != 0 {
		t.Errorf("unconfigured: %+v", r)
	}

	// The token service is down: the sync state is unknown, a warning.
	stop()
	ok := func(context.Context) Result {
		return Result{Status: StatusHealthy, Message: "Cloudflare KV connection successful"}
	}
	r := WithSyncStatus(ok, client, time.Now)(ctx)
	if r.Status != StatusWarning || r.Details["sync_status"] != "unavailable" || strings.Contains(r.Message, "127.0.0.1") {
		t.Errorf("token service down: %+v", r)
	}
}

func cfgUnconfigured() app.CloudflareConfig { return app.CloudflareConfig{} }
