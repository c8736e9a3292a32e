package team

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"

	"github.com/jackc/pgx/v5/pgxpool"
)

// fakeTokens is a TokenService whose RetireTeam counts a team's tokens from a
// map, or answers Unimplemented (a token service that cannot answer).
type fakeTokens struct {
	tokenv1.UnimplementedTokenServiceServer
	mu            sync.Mutex
	counts        map[string]int64
	retired       map[string]bool
	unimplemented bool
}

// RetireTeam refuses while the map counts tokens for the team, as the token
// service does, and remembers the teams it retired.
func (f *fakeTokens) RetireTeam(_ context.Context, req *tokenv1.RetireTeamRequest) (*tokenv1.RetireTeamResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unimplemented {
		return nil, status.Error(codes.Unimplemented, "not yet")
	}
	if n := f.counts[req.GetTeamId()]; n > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "Cannot delete team with %d tokens. Please revoke them first.", n)
	}
	if f.retired == nil {
		f.retired = map[string]bool{}
	}
	f.retired[req.GetTeamId()] = true
	return &tokenv1.RetireTeamResponse{}, nil
}

func (f *fakeTokens) set(team string, n int64, unimplemented bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[team], f.unimplemented = n, unimplemented
}

type harness struct {
	t      *testing.T
	ctx    context.Context
	pool   *pgxpool.Pool
	clerk  *authtest.FakeClerk
	srv    *Server
	svc    *Service
	tokens *fakeTokens
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	t.Parallel()
	h := &harness{t: t, ctx: context.Background(), pool: dbtest.NewPool(t, Migrations), clerk: authtest.NewClerk(t),
		tokens: &fakeTokens{counts: map[string]int64{}}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	tokenv1.RegisterTokenServiceServer(gs, h.tokens)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	h.srv = NewServer(h.pool, Options{
		Directory: NewDirectory(h.clerk.URL(), authtest.SecretKey),
		Tokens:    TokenServiceTeams{Client: tokenv1.NewTokenServiceClient(conn)},
	})
	h.svc = h.srv.Service()
	return h
}

// exec runs SQL for the test's setup.
func (h *harness) exec(sql string, args ...any) {
	h.t.Helper()
	if _, err := h.pool.Exec(h.ctx, sql, args...); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
}

// person stores roles for user id (team=role pairs) and returns the
// principal as the authenticator would resolve it.
func (h *harness) person(id string, roles ...string) context.Context {
	h.t.Helper()
	for i := 0; i+1 < len(roles); i += 2 {
		h.exec(`INSERT INTO team.teams (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING`, roles[i])
		h.exec(`INSERT INTO team.memberships (user_id, team_id, role) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, team_id) DO UPDATE SET role = EXCLUDED.role`, id, roles[i], roles[i+1])
	}
	return h.as(id)
}

// as returns a context whose caller is user id with the roles PostgreSQL holds.
func (h *harness) as(id string) context.Context {
	h.t.Helper()
	p, err := userPrincipal(h.ctx, h.pool, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return auth.WithPrincipal(h.ctx, p)
}

func (h *harness) globalAdmin(id string) context.Context {
	h.exec(`INSERT INTO team.global_roles (user_id, role) VALUES ($1, 'ADMIN') ON CONFLICT DO NOTHING`, id)
	return h.as(id)
}

func (h *harness) service() context.Context {
	return auth.WithPrincipal(h.ctx, &auth.Principal{Kind: auth.KindService, ID: "usage"})
}

// count returns a single number from SQL.
func (h *harness) count(sql string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.pool.QueryRow(h.ctx, sql, args...).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// snapshot is the state bad requests must leave unchanged.
func (h *harness) snapshot() string {
	h.t.Helper()
	var s string
	err := h.pool.QueryRow(h.ctx, `SELECT concat_ws('|',
		(SELECT string_agg(id || name || description || color || icon, ',' ORDER BY id) FROM team.teams),
		(SELECT string_agg(user_id || team_id || role, ',' ORDER BY user_id, team_id) FROM team.memberships),
		(SELECT string_agg(id || coalesce(revoked_at::text, ''), ',' ORDER BY id) FROM team.admin_keys),
		(SELECT string_agg(id, ',' ORDER BY id) FROM team.invitations),
		(SELECT count(*) FROM team.outbox))`).Scan(&s)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// code is the gRPC code a client would receive for err.
func code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	return status.Code(errs.ToStatus(context.Background(), nil, err))
}

// msg is the message a client would receive for err.
func msg(err error) string {
	return status.Convert(errs.ToStatus(context.Background(), nil, err)).Message()
}

// runRelays delivers the team outbox's Clerk mirror messages until the
// test ends.
func (h *harness) runMirror() {
	ctx, cancel := context.WithCancel(h.ctx)
	r := &outbox.Relay{Pool: h.pool, Schema: schema, Topics: []string{TopicClerkRoles},
		Handler: MirrorRoles(h.pool, h.svc.Directory, h.svc.Log), PollInterval: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	h.t.Cleanup(func() { cancel(); <-done })
}

// eventually polls cond for up to 5 s.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
