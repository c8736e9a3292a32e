package usage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Test doubles of the token, team and audit services, served over real
// gRPC on loopback. The database is always real.

type fakeToken struct {
	tokenv1.UnimplementedTokenServiceServer
	mu       sync.Mutex
	tokens   map[string]*tokenv1.TokenRef // by hash
	down     bool                         // every RPC answers Unavailable
	uses     map[string]time.Time
	useCalls int
	resolves int
}

func newFakeToken() *fakeToken {
	return &fakeToken{tokens: map[string]*tokenv1.TokenRef{}, uses: map[string]time.Time{}}
}

// hashOf is the token hash of a token string, as the edge computes it.
func hashOf(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

func (f *fakeToken) add(id int64, name, team string) string {
	h := hashOf(name)
	f.mu.Lock()
	f.tokens[h] = &tokenv1.TokenRef{Id: id, Name: name, TeamId: team, TokenHashes: []string{h}, Status: tokenv1.TokenStatus_TOKEN_STATUS_ACTIVE}
	f.mu.Unlock()
	return h
}

func (f *fakeToken) err() error {
	if f.down {
		return status.Error(codes.Unavailable, "down")
	}
	return nil
}

func (f *fakeToken) ResolveToken(_ context.Context, r *tokenv1.ResolveTokenRequest) (*tokenv1.ResolveTokenResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolves++
	if err := f.err(); err != nil {
		return nil, err
	}
	t := f.tokens[r.GetTokenHash()]
	if t == nil {
		return nil, status.Error(codes.NotFound, "Token not found")
	}
	return &tokenv1.ResolveTokenResponse{TokenId: t.Id, Name: t.Name, TeamId: t.TeamId, Status: t.Status}, nil
}

func (f *fakeToken) RecordTokenUse(_ context.Context, r *tokenv1.RecordTokenUseRequest) (*tokenv1.RecordTokenUseResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err(); err != nil {
		return nil, err
	}
	f.useCalls++
	for _, u := range r.GetUses() {
		if t := u.GetUsedAt().AsTime(); t.After(f.uses[u.GetTokenHash()]) {
			f.uses[u.GetTokenHash()] = t
		}
	}
	return &tokenv1.RecordTokenUseResponse{Updated: int32(len(r.GetUses()))}, nil
}

func (f *fakeToken) LookupTokens(_ context.Context, r *tokenv1.LookupTokensRequest) (*tokenv1.LookupTokensResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err(); err != nil {
		return nil, err
	}
	out := &tokenv1.LookupTokensResponse{}
	for _, id := range r.GetIds() {
		for _, t := range f.tokens {
			if t.Id == id {
				out.Tokens = append(out.Tokens, t)
			}
		}
	}
	return out, nil
}

func (f *fakeToken) ListRoutes(context.Context, *tokenv1.ListRoutesRequest) (*tokenv1.ListRoutesResponse, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return &tokenv1.ListRoutesResponse{Routes: []*tokenv1.Route{
		{Id: 7, Name: wrapperspb.String("OpenAI"), Path: "/api/openai"},
		{Id: 8, Name: wrapperspb.String("Images"), Path: "/api/images"},
	}}, nil
}

func (f *fakeToken) GetTokenStats(_ context.Context, r *tokenv1.GetTokenStatsRequest) (*tokenv1.GetTokenStatsResponse, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	out := &tokenv1.GetTokenStatsResponse{
		TotalTokens: 12, TotalRoutes: 5,
		TokensByTeam: []*tokenv1.TeamTokenCount{
			{TeamId: "core-team", Count: 3}, {TeamId: "backend-team", Count: 6}, {TeamId: "a", Count: 1},
			{TeamId: "b", Count: 1}, {TeamId: "c", Count: 1}, {TeamId: "gone-team", Count: 2},
		},
		TokenTrend: []*tokenv1.DayCount{{Date: "2025-11-05", Count: 1}, {Date: "2025-11-06", Count: 0}, {Date: "2025-11-08", Count: 2}},
		ExpiringSoon: []*tokenv1.ExpiringToken{
			{Id: 11, Name: "legacy-n8n", TeamId: "backend-team", ExpiresAt: timestamppb.New(time.Date(2025, 11, 20, 0, 0, 0, 0, time.UTC))},
		},
	}
	if !r.GetAllTeams() {
		out.TotalTokens = 6
		out.TokensByTeam = out.TokensByTeam[1:2]
	}
	return out, nil
}

type fakeTeam struct {
	teamv1.UnimplementedTeamServiceServer
}

var teamNamesForTest = map[string]string{"core-team": "Core Team", "backend-team": "Backend Team", "a": "A", "b": "B", "c": "C"}

func (fakeTeam) LookupTeams(_ context.Context, r *teamv1.LookupTeamsRequest) (*teamv1.LookupTeamsResponse, error) {
	out := &teamv1.LookupTeamsResponse{}
	for _, id := range r.GetTeamIds() {
		if n, ok := teamNamesForTest[id]; ok {
			out.Teams = append(out.Teams, &teamv1.Team{Id: id, Name: n})
		}
	}
	return out, nil
}

// ListTeams refuses, as the real team service refuses every service caller:
// it lists the teams of the person asking.
func (fakeTeam) ListTeams(context.Context, *teamv1.ListTeamsRequest) (*teamv1.ListTeamsResponse, error) {
	return nil, status.Error(codes.PermissionDenied, "Permission denied: services act only through internal methods")
}

// CountTeams counts the named teams: "gone-team" holds tokens but no longer exists.
func (fakeTeam) CountTeams(context.Context, *teamv1.CountTeamsRequest) (*teamv1.CountTeamsResponse, error) {
	return &teamv1.CountTeamsResponse{Total: int64(len(teamNamesForTest))}, nil
}

type fakeAudit struct {
	auditv1.UnimplementedAuditServiceServer
}

func (fakeAudit) ListRecentEvents(_ context.Context, r *auditv1.ListRecentEventsRequest) (*auditv1.ListRecentEventsResponse, error) {
	d, _ := structpb.NewStruct(map[string]any{"name": "OpenAI", "path": "/api/openai"})
	return &auditv1.ListRecentEventsResponse{Events: []*auditv1.AuditLog{
		{Id: 1, Action: "create", EntityType: "route", EntityId: "7", Details: d, CreatedAt: timestamppb.New(time.Date(2025, 11, 8, 7, 40, 11, 0, time.UTC))},
	}}, nil
}

// serveFakes serves the doubles and returns a client connection to them.
func serveFakes(t testing.TB, tok *fakeToken) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	tokenv1.RegisterTokenServiceServer(srv, tok)
	teamv1.RegisterTeamServiceServer(srv, fakeTeam{})
	auditv1.RegisterAuditServiceServer(srv, fakeAudit{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

const (
	testSecret     = "test-ingest-secret-0123456789abcdef"
	testPrevSecret = "test-previous-secret-0123456789abcdef"
)

// harness is a Service on a fresh database with the doubles.
type harness struct {
	pool  *pgxpool.Pool
	svc   *Service
	ing   *Ingester
	token *fakeToken
	lu    *lastUsed
	conn  *grpc.ClientConn
	now   time.Time
}

type harnessOpt func(*IngestConfig)

func allowUnsigned(c *IngestConfig) { c.AllowUnsigned = true }

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	pool := dbtest.NewPool(t, Migrations)
	return newHarnessOn(t, pool, opts...)
}

func testLog() *slog.Logger {
	if os.Getenv("USAGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func newHarnessOn(t testing.TB, pool *pgxpool.Pool, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{pool: pool, token: newFakeToken(), now: time.Now()}
	h.conn = serveFakes(t, h.token)
	cfg := IngestConfig{Secret: config.Secret(testSecret), PreviousSecret: config.Secret(testPrevSecret)}
	for _, o := range opts {
		o(&cfg)
	}
	tokenClient := tokenv1.NewTokenServiceClient(h.conn)
	h.lu = newLastUsed(tokenClient, time.Second, testLog())
	h.ing = NewIngester(pool, testLog(), IngesterOptions{OnCommit: h.lu.note})
	t.Cleanup(h.ing.Close)
	h.svc = NewService(ServiceDeps{
		Pool: pool, Log: testLog(), Ingest: cfg, Ingester: h.ing, Token: tokenClient,
		Team: teamv1.NewTeamServiceClient(h.conn), Audit: auditv1.NewAuditServiceClient(h.conn),
		Retention: 90 * 24 * time.Hour,
	})
	return h
}

// principals for analytics tests.
var (
	globalAdmin = &auth.Principal{Kind: auth.KindAdminKey, ID: "key_admin", GlobalRole: auth.RoleAdmin}
	coreManager = &auth.Principal{Kind: auth.KindUser, ID: "user_core", TeamRoles: map[string]auth.Role{"core-team": auth.RoleManager}}
	coreViewer  = &auth.Principal{Kind: auth.KindUser, ID: "user_view", TeamRoles: map[string]auth.Role{"core-team": auth.RoleViewer}}
	backendDev  = &auth.Principal{Kind: auth.KindUser, ID: "user_back", TeamRoles: map[string]auth.Role{"backend-team": auth.RoleDeveloper}}
	nobody      = &auth.Principal{Kind: auth.KindUser, ID: "user_none"}
)

func as(p *auth.Principal) context.Context { return auth.WithPrincipal(context.Background(), p) }

func errsIs(err error, k *errs.Kind) bool { return errors.Is(err, k) }

// backendDevOf is a DEVELOPER of team.
func backendDevOf(team string) *auth.Principal {
	return &auth.Principal{Kind: auth.KindUser, ID: "user_" + team, TeamRoles: map[string]auth.Role{team: auth.RoleDeveloper}}
}

type pgxpoolPool = pgxpool.Pool

// The analytics reads as the gRPC server answers them.

func (h *harness) stats(ctx context.Context) (*usagev1.GetUsageStatsResponse, error) {
	return NewServer(h.svc).GetUsageStats(ctx, &usagev1.GetUsageStatsRequest{})
}

func (h *harness) tokenUsage(ctx context.Context, id int64, limit *wrapperspb.Int32Value) (*usagev1.GetTokenUsageResponse, error) {
	return NewServer(h.svc).GetTokenUsage(ctx, &usagev1.GetTokenUsageRequest{TokenId: id, Limit: limit})
}

func (h *harness) routeUsage(ctx context.Context, path string, limit *wrapperspb.Int32Value) (*usagev1.GetRouteUsageResponse, error) {
	return NewServer(h.svc).GetRouteUsage(ctx, &usagev1.GetRouteUsageRequest{RoutePath: path, Limit: limit})
}

func (h *harness) overview(ctx context.Context) (*usagev1.GetDashboardOverviewResponse, error) {
	return NewServer(h.svc).GetDashboardOverview(ctx, &usagev1.GetDashboardOverviewRequest{})
}
