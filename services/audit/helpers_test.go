package audit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/grpcserver"
)

var testSecret = []byte("audit-test-service-secret-0123456789abcdef")

// insertColumns are audit.events' columns, for the tests that load rows
// with COPY.
var insertColumns = strings.Split("id,event_id,occurred_at,recorded_at,actor_type,actor_id,actor_email,actor_name,"+
	"action,entity_type,entity_id,team_id,details,request_id,client_ip,user_agent,prev_hash,hash", ",")

// fixture is an audit service on a fresh database behind the platform's
// real gRPC server (authentication, error mapping), with callers of each
// kind the tests need.
type fixture struct {
	pool   *pgxpool.Pool
	addKey func(*auth.Principal) string // mints an admin key for a principal
	svc    *Service
	client auditv1.AuditServiceClient
	tokens *fakeTokens

	admin   string // global ADMIN admin key
	alice   string // ADMIN of alpha
	bob     string // VIEWER of beta
	carol   string // DEVELOPER of core-team
	nobody  string // no role anywhere
	service string // the token service's credential
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	pool := dbtest.NewPool(t, Migrations)
	return newFixtureOn(t, pool)
}

func newFixtureOn(t testing.TB, pool *pgxpool.Pool) *fixture {
	t.Helper()
	res := &authtest.Resolver{}
	f := &fixture{pool: pool, tokens: &fakeTokens{err: status.Error(codes.Unimplemented, "not yet")}}
	f.admin = res.AddAdminKey(&auth.Principal{ID: "ak_admin", Name: "ops", GlobalRole: auth.RoleAdmin})
	f.alice = res.AddAdminKey(&auth.Principal{ID: "ak_alice", TeamRoles: map[string]auth.Role{"alpha": auth.RoleAdmin}})
	f.bob = res.AddAdminKey(&auth.Principal{ID: "ak_bob", TeamRoles: map[string]auth.Role{"beta": auth.RoleViewer}})
	f.carol = res.AddAdminKey(&auth.Principal{ID: "ak_carol", TeamRoles: map[string]auth.Role{"core-team": auth.RoleDeveloper}})
	f.nobody = res.AddAdminKey(&auth.Principal{ID: "ak_nobody"})
	f.service = auth.ServiceCredential(testSecret, "token")
	f.addKey = res.AddAdminKey
	f.svc = NewService(NewStore(pool), f.tokens, nil)

	srv := grpcserver.New(grpcserver.Options{Name: "audit-test", Auth: &auth.Authenticator{Resolver: res, ServiceSecret: testSecret}})
	auditv1.RegisterAuditServiceServer(srv.GRPC(), NewServer(f.svc))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, nil) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); cancel(); <-done })
	f.client = auditv1.NewAuditServiceClient(conn)
	return f
}

// as returns a context whose RPCs carry cred.
func as(cred string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+cred)
}

// fakeTokens answers GetTokenStats with fixed figures or an error.
type fakeTokens struct {
	err  error
	resp *tokenv1.GetTokenStatsResponse
	last *tokenv1.GetTokenStatsRequest
}

func (f *fakeTokens) GetTokenStats(_ context.Context, in *tokenv1.GetTokenStatsRequest, _ ...grpc.CallOption) (*tokenv1.GetTokenStatsResponse, error) {
	f.last = in
	return f.resp, f.err
}

var t0 = time.Date(2025, 11, 8, 7, 0, 0, 0, time.UTC)

// ev builds a submitted event.
func ev(id, action, entity, team string, details map[string]any) *auditv1.AuditEvent {
	d, err := structpb.NewStruct(details)
	if err != nil {
		panic(err)
	}
	return &auditv1.AuditEvent{
		EventId: id, OccurredAt: timestamppb.New(t0), Action: action, EntityType: entity, EntityId: "1", TeamId: team,
		Actor:     &auditv1.Actor{Type: "user", Id: "user_" + id, Email: id + "@example.com", Name: "User " + id},
		Details:   d,
		RequestId: "req-" + id, ClientIp: "203.0.113.7", UserAgent: "test-agent/1.0",
	}
}

// record appends events through the gRPC API as the token service would.
func (f *fixture) record(t testing.TB, events ...*auditv1.AuditEvent) *auditv1.RecordResponse {
	t.Helper()
	resp, err := f.client.Record(as(f.service), &auditv1.RecordRequest{Events: events})
	if err != nil {
		t.Fatalf("Record: %v", err)
	}
	return resp
}

// seq records n simple events ev-1..ev-n in alpha.
func (f *fixture) seq(t testing.TB, n int) {
	t.Helper()
	var batch []*auditv1.AuditEvent
	for i := 1; i <= n; i++ {
		batch = append(batch, ev(fmt.Sprintf("ev-%d", i), "create", "token", "alpha", map[string]any{"name": fmt.Sprintf("t%d", i)}))
	}
	f.record(t, batch...)
}

func (f *fixture) count(t testing.TB) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit.events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// verify runs VerifyChain as the global admin.
func (f *fixture) verify(t testing.TB) *auditv1.VerifyChainResponse {
	t.Helper()
	r, err := f.client.VerifyChain(as(f.admin), &auditv1.VerifyChainRequest{})
	if err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
	return r
}

// tamper runs sql as an attacker with superuser rights would: with
// session_replication_role = replica, which skips the append-only trigger.
func (f *fixture) tamper(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("tamper %q: %v", sql, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func code(err error) codes.Code { return status.Code(err) }

// isCode reports whether err is a gRPC status of code c with a message.
func isCode(err error, c codes.Code) bool {
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se) && se.GRPCStatus().Code() == c && se.GRPCStatus().Message() != ""
}
