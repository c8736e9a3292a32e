package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tokenmanager/tokenmanager/gateway/internal/config"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
)

// fakeTokens is a TokenService that records what reached it; it stands in for
// the service so the gateway's own behaviour can be tested in isolation.
type fakeTokens struct {
	tokenv1.UnimplementedTokenServiceServer
	md  chan metadata.MD
	err error
}

func (f *fakeTokens) ListTokens(ctx context.Context, _ *tokenv1.ListTokensRequest) (*tokenv1.ListTokensResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	select {
	case f.md <- md:
	default:
	}
	if f.err != nil {
		return nil, f.err
	}
	created := time.Date(2025, 11, 8, 7, 12, 45, 123456000, time.UTC)
	return &tokenv1.ListTokensResponse{Tokens: []*tokenv1.Token{{
		Id: 42, Name: "n8n-image-workflow", TeamId: wrapperspb.String("backend-team"),
		Scopes: []string{"image", "tag:media"}, CreatedAt: timestamppb.New(created), Status: "active",
	}}}, nil
}

func (f *fakeTokens) CreateToken(_ context.Context, req *tokenv1.CreateTokenRequest) (*tokenv1.CreateTokenResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name must be 1..255 characters")
	}
	return &tokenv1.CreateTokenResponse{Id: 7, Token: "ntk_x", Name: req.GetName(), TeamId: req.GetTeamId(), Scopes: req.GetScopes()}, nil
}

type fakeUsage struct {
	usagev1.UnimplementedUsageServiceServer
	got chan *usagev1.IngestRequest
}

func (f *fakeUsage) Ingest(_ context.Context, req *usagev1.IngestRequest) (*usagev1.IngestResponse, error) {
	f.got <- req
	return &usagev1.IngestResponse{Status: "logged", Accepted: 1}, nil
}

type harness struct {
	srv    *Server
	tokens *fakeTokens
	usage  *fakeUsage
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{tokens: &fakeTokens{md: make(chan metadata.MD, 1)}, usage: &fakeUsage{got: make(chan *usagev1.IngestRequest, 1)}}
	gs := grpc.NewServer()
	tokenv1.RegisterTokenServiceServer(gs, h.tokens)
	usagev1.RegisterUsageServiceServer(gs, h.usage)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	addr := lis.Addr().String()
	cfg, _, err := config.Load(func(k string) (string, bool) {
		switch k {
		case "TM_TOKEN_ADDR", "TM_USAGE_ADDR", "TM_TEAM_ADDR", "TM_AUDIT_ADDR", "TM_HEALTH_ADDR":
			return addr, true
		case "ALLOWED_FRONTEND_ORIGINS":
			return "https://token.example.com", true
		case "TM_MAX_BODY_BYTES":
			return "2048", true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	h.srv, err = New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) do(t *testing.T, method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	return rec
}

func detailOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Detail *string `json:"detail"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Detail == nil {
		t.Fatalf("body %q is not {\"detail\": string}", rec.Body.String())
	}
	return *body.Detail
}

func TestListIsBareArrayWithContractTypes(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, "GET", "/api/tokens", "", map[string]string{"Authorization": "Bearer x"})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	want := `[{"id":42,"name":"n8n-image-workflow","team_id":"backend-team","created_by":null,"description":null,"token_preview":null,"scopes":["image","tag:media"],"created_at":"2025-11-08T07:12:45.123456Z","expires_at":null,"last_used":null,"status":"active","rotation_grace_ends_at":null}]`
	if got := rec.Body.String(); got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
}

func TestForwardsAuthorizationAndRequestID(t *testing.T) {
	h := newHarness(t)
	rec := h.do(t, "GET", "/api/tokens", "", map[string]string{"Authorization": "Bearer abc", "X-Request-Id": "req-123", "Cookie": "session=secret"})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	md := <-h.tokens.md
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer abc" {
		t.Errorf("authorization = %v", got)
	}
	if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "req-123" {
		t.Errorf("x-request-id = %v", got)
	}
	if got := md.Get("grpcgateway-cookie"); len(got) != 0 {
		t.Errorf("cookie forwarded: %v", got)
	}
	if got := rec.Header().Get("X-Request-Id"); got != "req-123" {
		t.Errorf("response X-Request-Id = %q", got)
	}
	// An id a client could use to forge log lines is replaced.
	_ = h.do(t, "GET", "/api/tokens", "", map[string]string{"X-Request-Id": "bad id\nINJECTED"})
	md = <-h.tokens.md
	if got := md.Get("x-request-id"); len(got) != 1 || strings.Contains(got[0], "INJECTED") || len(got[0]) != 32 {
		t.Errorf("unsafe request id passed through: %v", got)
	}
}

func TestErrorsBecomeDetailWithStatus(t *testing.T) {
	cases := []struct {
		err    error
		status int
		detail string
	}{
		{status.Error(codes.Unauthenticated, "Not authenticated"), 401, "Not authenticated"},
		{status.Error(codes.PermissionDenied, "You are not a member of team 'x'"), 403, "You are not a member of team 'x'"},
		{status.Error(codes.NotFound, "Token not found"), 404, "Token not found"},
		{status.Error(codes.AlreadyExists, "Route path '/a' already exists"), 409, "Route path '/a' already exists"},
		{status.Error(codes.InvalidArgument, "No fields to update"), 400, "No fields to update"},
		{status.Error(codes.ResourceExhausted, "slow down"), 429, "slow down"},
		{status.Error(codes.Unimplemented, "method ListTokens not implemented"), 501, "method ListTokens not implemented"},
		{status.Error(codes.Unavailable, "dial tcp 10.0.0.3:9101: connection refused"), 503, "Service temporarily unavailable, please retry"},
		{status.Error(codes.Internal, "pq: relation tokens does not exist"), 500, "Internal server error"},
	}
	h := newHarness(t)
	for _, c := range cases {
		h.tokens.err = c.err
		rec := h.do(t, "GET", "/api/tokens", "", map[string]string{"Origin": "https://token.example.com"})
		if rec.Code != c.status {
			t.Errorf("%v: status %d, want %d", c.err, rec.Code, c.status)
		}
		if d := detailOf(t, rec); d != c.detail {
			t.Errorf("%v: detail %q, want %q", c.err, d, c.detail)
		}
		if rec.Header().Get("Access-Control-Allow-Origin") != "https://token.example.com" {
			t.Errorf("%v: error response lacks CORS headers", c.err)
		}
		if ra := rec.Header().Get("Retry-After"); (c.status == 503) != (ra != "") {
			t.Errorf("%v: status %d with Retry-After %q", c.err, c.status, ra)
		}
		// A cross-origin page can read Retry-After only when it is exposed.
		if e := rec.Header().Get("Access-Control-Expose-Headers"); !strings.Contains(e, "Retry-After") {
			t.Errorf("%v: Access-Control-Expose-Headers %q lacks Retry-After", c.err, e)
		}
	}
}

// TestStatusCodesTheDashboardReadsArePinned: the gateway uses grpc-gateway's
// code → status mapping; these are the statuses the contract and the v2.7
// dashboard depend on (its forms show 400/409 details, it signs in again on
// 401, backs off on 503), so an upgrade that moves one fails here.
func TestStatusCodesTheDashboardReadsArePinned(t *testing.T) {
	want := map[codes.Code]int{
		codes.OK: 200, codes.InvalidArgument: 400, codes.FailedPrecondition: 400, codes.OutOfRange: 400,
		codes.Unauthenticated: 401, codes.PermissionDenied: 403, codes.NotFound: 404,
		codes.AlreadyExists: 409, codes.Aborted: 409, codes.ResourceExhausted: 429, codes.Canceled: 499,
		codes.Internal: 500, codes.Unknown: 500, codes.DataLoss: 500, codes.Unimplemented: 501,
		codes.Unavailable: 503, codes.DeadlineExceeded: 504,
	}
	for c, status := range want {
		if got := runtime.HTTPStatusFromCode(c); got != status {
			t.Errorf("%v → %d, want %d", c, got, status)
		}
	}
}

func TestBadBodies(t *testing.T) {
	h := newHarness(t)
	cases := []struct{ name, body string }{
		{"malformed json", `{"name": `},
		{"wrong type", `{"name": 12, "team_id": "t", "scopes": ["*"]}`},
		{"unknown field", `{"name": "a", "team_id": "t", "scopez": ["*"]}`},
		{"array instead of object", `[1,2]`},
	}
	for _, c := range cases {
		rec := h.do(t, "POST", "/api/tokens", c.body, map[string]string{"Content-Type": "application/json"})
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400 (%s)", c.name, rec.Code, rec.Body)
		}
		detailOf(t, rec)
	}
	big := `{"name": "` + strings.Repeat("a", 4096) + `"}`
	rec := h.do(t, "POST", "/api/tokens", big, nil)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: status %d, want 413", rec.Code)
	}
	detailOf(t, rec)
	// Chunked (no Content-Length) oversized body is caught while reading.
	req := httptest.NewRequest("POST", "/api/tokens", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	rr := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rr, req)
	if rr.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized chunked body: status %d, want 413 (%s)", rr.Code, rr.Body)
	}
}

func TestCORS(t *testing.T) {
	h := newHarness(t)
	pre := h.do(t, "OPTIONS", "/api/tokens", "", map[string]string{"Origin": "https://token.example.com", "Access-Control-Request-Method": "POST"})
	if pre.Code != http.StatusNoContent || pre.Header().Get("Access-Control-Allow-Origin") != "https://token.example.com" {
		t.Fatalf("preflight: %d %v", pre.Code, pre.Header())
	}
	if !strings.Contains(pre.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight does not allow Authorization")
	}
	foreign := h.do(t, "OPTIONS", "/api/tokens", "", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
	if foreign.Code != http.StatusForbidden || foreign.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign preflight: %d %v", foreign.Code, foreign.Header())
	}
	get := h.do(t, "GET", "/api/tokens", "", map[string]string{"Origin": "https://evil.example"})
	if get.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin got CORS headers")
	}
}

func TestUnknownPathsAndMethods(t *testing.T) {
	h := newHarness(t)
	if rec := h.do(t, "GET", "/api/nope", "", nil); rec.Code != 404 || detailOf(t, rec) != "Not Found" {
		t.Errorf("unknown path: %d %s", rec.Code, rec.Body)
	}
	// The debug endpoints of v2.7 are gone.
	for _, p := range []string{"/api/usage/test-data", "/api/test/get-real-data"} {
		if rec := h.do(t, "GET", p, "", nil); rec.Code != 404 {
			t.Errorf("%s: %d, want 404", p, rec.Code)
		}
	}
}

func TestUsageLogPassesRawBodyAndSignature(t *testing.T) {
	h := newHarness(t)
	body := `{"token_hash":"abc","route":"/api/x","timestamp":1762586400123}`
	rec := h.do(t, "POST", "/api/usage-log", body, map[string]string{"X-TM-Signature": "v1=deadbeef", "X-TM-Timestamp": "1762586400"})
	if rec.Code != 200 {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
	got := <-h.usage.got
	if string(got.GetBody()) != body || got.GetSignature() != "v1=deadbeef" || got.GetSignatureTimestamp() != "1762586400" {
		t.Errorf("ingest got %+v", got)
	}
	var resp map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp["status"] != "logged" || resp["accepted"] != float64(1) {
		t.Errorf("body %s", rec.Body)
	}
}

func TestRootDocsAndOpenAPI(t *testing.T) {
	h := newHarness(t)
	if rec := h.do(t, "GET", "/", "", nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"docs":"/docs"`) {
		t.Errorf("root: %d %s", rec.Code, rec.Body)
	}
	if rec := h.do(t, "GET", "/docs", "", nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), "/openapi.json") {
		t.Errorf("docs: %d", rec.Code)
	}
	rec := h.do(t, "GET", "/openapi.json", "", nil)
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Paths["/api/tokens/{id}/reveal"]["get"]; !ok {
		t.Errorf("openapi lacks GET /api/tokens/{id}/reveal")
	}
	if _, ok := doc.Paths["/tokenmanager.token.v1.TokenService/ResolveToken"]; ok {
		t.Errorf("internal RPC exposed in openapi")
	}
}

func TestInternalRPCsAreNotServed(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/tokenmanager.token.v1.TokenService/ResolveToken", "/tokenmanager.team.v1.TeamService/GetPrincipal"} {
		if rec := h.do(t, "POST", p, "{}", nil); rec.Code != 404 {
			t.Errorf("POST %s: %d, want 404", p, rec.Code)
		}
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, c := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"no proxies: the peer, whatever the client claims", "203.0.113.7:5000", []string{"1.2.3.4"}, nil, "203.0.113.7"},
		{"untrusted peer: the peer", "203.0.113.7:5000", []string{"1.2.3.4"}, trusted, "203.0.113.7"},
		{"trusted proxy: the address it saw", "10.0.0.5:443", []string{"198.51.100.9"}, trusted, "198.51.100.9"},
		{"a client's forged entry is left of the real one", "10.0.0.5:443", []string{"6.6.6.6, 198.51.100.9"}, trusted, "198.51.100.9"},
		{"chained trusted proxies are skipped", "10.0.0.5:443", []string{"198.51.100.9", "10.1.1.1, 10.2.2.2"}, trusted, "198.51.100.9"},
		{"garbage stops at the last trusted hop", "10.0.0.5:443", []string{"not-an-ip, 10.1.1.1"}, trusted, "10.1.1.1"},
		{"trusted proxy without X-Forwarded-For", "10.0.0.5:443", nil, trusted, "10.0.0.5"},
		{"IPv6 loopback proxy", "[::1]:443", []string{"2001:db8::7"}, trusted, "2001:db8::7"},
		{"IPv4-mapped peer", "[::ffff:203.0.113.7]:1", nil, trusted, "203.0.113.7"},
		{"peer is not an IP", "@unix", []string{"1.2.3.4"}, trusted, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := clientIP(c.remote, c.xff, c.trusted); got != c.want {
				t.Errorf("clientIP(%q, %q) = %q, want %q", c.remote, c.xff, got, c.want)
			}
		})
	}
}

// TestClientCannotChooseItsAuditIP: the services record the first
// X-Forwarded-For entry; a client's forged header must not become it.
func TestClientCannotChooseItsAuditIP(t *testing.T) {
	h := newHarness(t)
	req := httptest.NewRequest("GET", "/api/tokens", nil)
	req.RemoteAddr = "203.0.113.7:40000"
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	md := <-h.tokens.md
	got := md.Get("x-forwarded-for")
	if len(got) == 0 || strings.Contains(strings.Join(got, ","), "6.6.6.6") || !strings.HasPrefix(got[0], "203.0.113.7") {
		t.Fatalf("x-forwarded-for = %q, want the peer first and no forged entry", got)
	}
}
