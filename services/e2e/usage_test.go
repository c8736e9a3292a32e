package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/usage"
)

// The usage service's REST surface. The token and audit services are
// still being built, so the usage binary of this stack talks to small
// doubles of them served by the test (TM_TOKEN_ADDR, TM_AUDIT_ADDR of the
// usage binary only); the team service, gateway and database are real.
// TestUsageAgainstRealServices checks how it degrades against the real
// ones as they are today.

const e2eIngestSecret = "e2e-usage-ingest-secret-0123456789abcdef"

type usageTokenDouble struct {
	tokenv1.UnimplementedTokenServiceServer
	tokens map[string]*tokenv1.TokenRef
}

func (d *usageTokenDouble) ResolveToken(_ context.Context, r *tokenv1.ResolveTokenRequest) (*tokenv1.ResolveTokenResponse, error) {
	t := d.tokens[r.GetTokenHash()]
	if t == nil {
		return nil, status.Error(codes.NotFound, "Token not found")
	}
	return &tokenv1.ResolveTokenResponse{TokenId: t.Id, Name: t.Name, TeamId: t.TeamId, Status: t.Status}, nil
}

func (d *usageTokenDouble) RecordTokenUse(_ context.Context, r *tokenv1.RecordTokenUseRequest) (*tokenv1.RecordTokenUseResponse, error) {
	return &tokenv1.RecordTokenUseResponse{Updated: int32(len(r.GetUses()))}, nil
}

func (d *usageTokenDouble) LookupTokens(_ context.Context, r *tokenv1.LookupTokensRequest) (*tokenv1.LookupTokensResponse, error) {
	out := &tokenv1.LookupTokensResponse{}
	for _, id := range r.GetIds() {
		for _, t := range d.tokens {
			if t.Id == id {
				out.Tokens = append(out.Tokens, t)
			}
		}
	}
	return out, nil
}

func (d *usageTokenDouble) ListRoutes(context.Context, *tokenv1.ListRoutesRequest) (*tokenv1.ListRoutesResponse, error) {
	return &tokenv1.ListRoutesResponse{Routes: []*tokenv1.Route{{Id: 7, Name: wrapperspb.String("OpenAI"), Path: "/api/openai"}}}, nil
}

func (d *usageTokenDouble) GetTokenStats(_ context.Context, r *tokenv1.GetTokenStatsRequest) (*tokenv1.GetTokenStatsResponse, error) {
	out := &tokenv1.GetTokenStatsResponse{
		TotalTokens: 2, TotalRoutes: 1,
		TokensByTeam: []*tokenv1.TeamTokenCount{{TeamId: "core-team", Count: 1}, {TeamId: "backend-team", Count: 1}},
		TokenTrend:   []*tokenv1.DayCount{{Date: "2025-11-05", Count: 1}, {Date: "2025-11-08", Count: 1}},
		ExpiringSoon: []*tokenv1.ExpiringToken{{Id: 43, Name: "backend-bot", TeamId: "backend-team",
			ExpiresAt: timestamppb.New(time.Date(2025, 11, 20, 0, 0, 0, 0, time.UTC))}},
	}
	if !r.GetAllTeams() {
		out.TotalTokens = 1
		out.TokensByTeam = out.TokensByTeam[1:]
	}
	return out, nil
}

type usageAuditDouble struct {
	auditv1.UnimplementedAuditServiceServer
}

func (usageAuditDouble) ListRecentEvents(context.Context, *auditv1.ListRecentEventsRequest) (*auditv1.ListRecentEventsResponse, error) {
	d, _ := structpb.NewStruct(map[string]any{"name": "OpenAI", "path": "/api/openai", "created_by_email": "joey@example.com"})
	return &auditv1.ListRecentEventsResponse{Events: []*auditv1.AuditLog{{Id: 1, Action: "create", EntityType: "route", EntityId: "7",
		Details: d, CreatedAt: timestamppb.New(time.Date(2025, 11, 8, 7, 40, 11, 310000000, time.UTC))}}}, nil
}

func e2eHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func serveUsageDoubles(t *testing.T, tokens map[string]*tokenv1.TokenRef) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	tokenv1.RegisterTokenServiceServer(srv, &usageTokenDouble{tokens: tokens})
	auditv1.RegisterAuditServiceServer(srv, usageAuditDouble{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// postUsage posts body to /api/usage-log, signed with secret unless it is "".
func (s *stack) postUsage(body []byte, secret string) response {
	s.t.Helper()
	req, _ := http.NewRequest("POST", s.url+"/api/usage-log", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set("X-TM-Timestamp", ts)
		req.Header.Set("X-TM-Signature", usage.Sign([]byte(secret), ts, body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

var usageVolatile = []string{"used_at", "hour", "last_used", "first_used"}

func TestUsage(t *testing.T) {
	coreHash, backendHash := e2eHash("tm_core_token"), e2eHash("tm_backend_token")
	doubles := serveUsageDoubles(t, map[string]*tokenv1.TokenRef{
		coreHash:    {Id: 42, Name: "n8n-image-workflow", TeamId: "core-team", TokenHashes: []string{coreHash}},
		backendHash: {Id: 43, Name: "backend-bot", TeamId: "backend-team", TokenHashes: []string{backendHash}},
	})
	s := startStack(t, withEnv("usage", "TM_TOKEN_ADDR="+doubles, "TM_AUDIT_ADDR="+doubles,
		"USAGE_INGEST_SECRET="+e2eIngestSecret, "USAGE_LAST_USED_INTERVAL=200ms"))
	s.exec(t, `INSERT INTO team.teams (id, name) VALUES ('backend-team', 'Backend Team')`)
	s.exec(t, `INSERT INTO team.memberships (user_id, team_id, role) VALUES
		('user_core_manager', 'core-team', 'MANAGER'), ('user_core_viewer', 'core-team', 'VIEWER'),
		('user_backend_dev', 'backend-team', 'DEVELOPER')`)
	manager := s.clerk.SessionToken(t, "user_core_manager")
	viewer := s.clerk.SessionToken(t, "user_core_viewer")
	backendDev := s.clerk.SessionToken(t, "user_backend_dev")
	loner := s.clerk.SessionToken(t, "user_without_teams")

	// A fixed time in the recent past, so the figures are reproducible.
	base := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	ev := func(hash, id, route string, offset time.Duration, status, latency int) map[string]any {
		return map[string]any{"event_id": id, "token_hash": hash, "route": route, "timestamp": base.Add(offset).UnixMilli(),
			"response_status": status, "response_time_ms": latency, "ip_address": "203.0.113.7", "user_agent": "n8n",
			"request_method": "POST", "error_message": nil}
	}
	var batch []any
	for i := range 8 {
		st := 200
		if i == 3 {
			st = 502
		}
		batch = append(batch, ev(coreHash, fmt.Sprint("core-", i), "/api/openai", time.Duration(i)*time.Minute, st, 100*(i+1)))
	}
	batch = append(batch, ev(backendHash, "backend-0", "/api/other", 30*time.Minute, 404, 20))
	batchBody, _ := json.Marshal(map[string]any{"events": batch})

	t.Run("ingest", func(t *testing.T) {
		single, _ := json.Marshal(map[string]any{"token_hash": coreHash, "route": "/api/openai", "timestamp": base.Add(-time.Minute).UnixMilli(),
			"response_status": 200, "response_time_ms": 412, "ip_address": "203.0.113.7", "user_agent": "n8n", "request_method": "GET", "error_message": nil})
		r := s.postUsage(single, e2eIngestSecret)
		if r.Status != 200 {
			t.Fatalf("single: %d %s", r.Status, r.Body)
		}
		assertGolden(t, "usage_ingest_single.json", r.Body, nil)
		r = s.postUsage(batchBody, e2eIngestSecret)
		if r.Status != 200 {
			t.Fatalf("batch: %d %s", r.Status, r.Body)
		}
		assertGolden(t, "usage_ingest_batch.json", r.Body, nil)
		r = s.postUsage(batchBody, e2eIngestSecret)
		if r.Status != 200 || !strings.Contains(string(r.Body), `"duplicates":9`) {
			t.Fatalf("retry: %d %s", r.Status, r.Body)
		}
		assertGolden(t, "usage_ingest_retry.json", r.Body, nil)
	})

	t.Run("ingest rejects", func(t *testing.T) {
		unknown, _ := json.Marshal(map[string]any{"token_hash": e2eHash("nope"), "timestamp": time.Now().UnixMilli()})
		malformed, _ := json.Marshal(map[string]any{"events": []any{ev(coreHash, "x-1", "/a", 0, 200, 1), map[string]any{"token_hash": coreHash}}})
		for _, c := range []struct {
			name   string
			body   []byte
			secret string
			status int
			golden string
		}{
			{"unsigned", batchBody, "", 401, "usage_ingest_unsigned.json"},
			{"wrong secret", batchBody, "another-secret-0123456789abcdefghijkl", 401, "usage_ingest_bad_signature.json"},
			{"unknown token", unknown, e2eIngestSecret, 400, "usage_ingest_unknown_token.json"},
			{"malformed event", malformed, e2eIngestSecret, 400, "usage_ingest_malformed.json"},
			{"not json", []byte("nope"), e2eIngestSecret, 400, ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := s.postUsage(c.body, c.secret)
				if r.Status != c.status {
					t.Fatalf("%d %s, want %d", r.Status, r.Body, c.status)
				}
				detail(t, r)
				if c.golden != "" {
					assertGolden(t, c.golden, r.Body, nil)
				}
			})
		}
		// Stale timestamp, by hand.
		req, _ := http.NewRequest("POST", s.url+"/api/usage-log", bytes.NewReader(batchBody))
		ts := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
		req.Header.Set("X-TM-Timestamp", ts)
		req.Header.Set("X-TM-Signature", usage.Sign([]byte(e2eIngestSecret), ts, batchBody))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("stale timestamp: %d", resp.StatusCode)
		}
		if n := s.count(t, "SELECT count(*) FROM usage.events"); n != 10 {
			t.Errorf("%d events stored, want 10", n)
		}
	})

	t.Run("stats", func(t *testing.T) {
		s.getGolden(t, "/api/usage/stats", s.adminKey, "usage_stats.json", usageVolatile)
		s.getGolden(t, "/api/usage/stats", backendDev, "usage_stats_backend_developer.json", usageVolatile)
		s.getGolden(t, "/api/usage/stats", loner, "usage_stats_empty.json", usageVolatile)
		if r := s.do("GET", "/api/usage/stats", "", nil); r.Status != 401 {
			t.Errorf("anonymous: %d", r.Status)
		}
	})

	t.Run("token usage", func(t *testing.T) {
		r := s.getGolden(t, "/api/usage/token/42?limit=3", manager, "usage_token.json", usageVolatile)
		for _, c := range []struct {
			name, path, bearer string
			status             int
		}{
			{"viewer", "/api/usage/token/42", viewer, 403},
			// Outside the token's team: as if it did not exist.
			{"other team", "/api/usage/token/42", backendDev, 404},
			{"no teams", "/api/usage/token/42", loner, 404},
			{"anonymous", "/api/usage/token/42", "", 401},
			{"unknown", "/api/usage/token/999", s.adminKey, 404},
			{"not a number", "/api/usage/token/abc", s.adminKey, 400},
			{"bad limit", "/api/usage/token/42?limit=0", s.adminKey, 400},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := s.do("GET", c.path, c.bearer, nil)
				if r.Status != c.status {
					t.Fatalf("%d %s, want %d", r.Status, r.Body, c.status)
				}
				detail(t, r)
			})
		}
		r = s.do("GET", "/api/usage/token/42", viewer, nil)
		assertGolden(t, "usage_token_forbidden.json", r.Body, nil)
	})

	t.Run("route usage", func(t *testing.T) {
		s.getGolden(t, "/api/usage/route?route_path=/api/openai&limit=2", viewer, "usage_route.json", usageVolatile)
		s.getGolden(t, "/api/usage/route", s.adminKey, "usage_route_list.json", usageVolatile)
		r := s.do("GET", "/api/usage/route?route_path=/api/openai", backendDev, nil)
		if r.Status != 200 || !strings.Contains(string(r.Body), `"total_calls":0`) {
			t.Errorf("another team's route usage: %d %s", r.Status, r.Body)
		}
		if r := s.do("GET", "/api/usage/route?limit=-1", s.adminKey, nil); r.Status != 400 {
			t.Errorf("bad limit: %d", r.Status)
		}
	})

	t.Run("dashboard overview", func(t *testing.T) {
		// total_teams comes from the team service's CountTeams: every team,
		// not only those holding tokens, and nothing is unavailable.
		s.getGolden(t, "/api/dashboard/overview", s.adminKey, "dashboard_overview.json", nil)
		s.getGolden(t, "/api/dashboard/overview", backendDev, "dashboard_overview_backend_developer.json", nil)
		if r := s.do("GET", "/api/dashboard/overview", "", nil); r.Status != 401 {
			t.Errorf("anonymous: %d", r.Status)
		}
	})

	t.Run("secrets stay out of logs", func(t *testing.T) {
		for name, p := range s.procs {
			if strings.Contains(p.Logs(), e2eIngestSecret) {
				t.Errorf("%s log contains the ingest secret", name)
			}
		}
	})
}

// TestUsageAgainstRealServices runs the usage service against the token and
// audit services as they are today (their RPCs may still answer
// Unimplemented): ingest answers 503 until ResolveToken works, stores
// nothing, and the dashboards still answer, naming what was unavailable.
func TestUsageAgainstRealServices(t *testing.T) {
	s := startStack(t, withEnv("usage", "USAGE_INGEST_SECRET="+e2eIngestSecret))
	body, _ := json.Marshal(map[string]any{"token_hash": e2eHash("x"), "timestamp": time.Now().UnixMilli()})
	r := s.postUsage(body, e2eIngestSecret)
	switch r.Status {
	case 503:
		if d := detail(t, r); !strings.Contains(d, "Token service unavailable") {
			t.Errorf("503 detail %q", d)
		}
	case 400: // the token service answers: the hash is unknown
	default:
		t.Fatalf("ingest: %d %s", r.Status, r.Body)
	}
	if n := s.count(t, "SELECT count(*) FROM usage.events"); n != 0 {
		t.Errorf("%d events stored", n)
	}
	for _, path := range []string{"/api/usage/stats", "/api/dashboard/overview", "/api/usage/route?route_path=/x"} {
		r := s.do("GET", path, s.adminKey, nil)
		if r.Status != 200 {
			t.Errorf("GET %s: %d %s", path, r.Status, r.Body)
		}
	}
}
