package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/grpcserver"
)

// TestDatabaseGoneAnswersUnavailable serves RPCs that query a real
// PostgreSQL database while the database's backends are terminated (what a
// PostgreSQL restart does to a service), while its pool points at a port
// nothing listens on, and while every pool connection is taken. No RPC may
// answer Internal: each either succeeds (the pool reconnected) or answers
// Unavailable, which the gateway turns into 503 with Retry-After.
func TestDatabaseGoneAnswersUnavailable(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	ctx := context.Background()
	pool, err := db.Connect(ctx, dbURL, db.WithApplicationName("dbdown"), db.WithMaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	admin, err := pgx.Connect(ctx, os.Getenv(dbtest.EnvVar))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	terminate := func() int {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, dbName).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := l.Addr().String()
	_ = l.Close()
	deadPool, err := pgxpool.New(ctx, "postgres://postgres@"+closedAddr+"/postgres?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deadPool.Close)
	// A service this one calls, which is down.
	deadPeer, err := grpc.NewClient(closedAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deadPeer.Close() })

	r := start(t, &testService{
		echo: func(ctx context.Context, in string) (string, error) {
			switch in {
			case "sleep":
				_, err := pool.Exec(ctx, "SELECT pg_sleep(30)")
				return "slept", err
			case "select":
				var one int
				return "one", pool.QueryRow(ctx, "SELECT 1").Scan(&one)
			case "dead pool":
				_, err := deadPool.Exec(ctx, "SELECT 1")
				return "", err
			case "exhausted":
				// Both connections are held by "sleep" calls; the
				// service waits for one with a deadline of its own.
				actx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
				_, err := pool.Exec(actx, "SELECT 1")
				return "", err
			case "peer down":
				_, err := echo(ctx, deadPeer, "x")
				return "", fmt.Errorf("calling the team service: %w", err)
			}
			return "", errors.New("unknown case")
		},
	}, grpcserver.Options{Name: "test"})
	conn := r.client(t)
	call := func(in string) error {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := echo(cctx, conn, in)
		return err
	}
	wantUnavailable := func(what string, err error) {
		t.Helper()
		if st := status.Convert(err); st.Code() != codes.Unavailable {
			t.Errorf("%s: got %v %q, want Unavailable", what, st.Code(), st.Message())
		}
	}

	if err := call("select"); err != nil {
		t.Fatalf("healthy database: %v", err)
	}

	// Backends terminated mid-query (57P01 admin_shutdown or EOF).
	done := make(chan error, 1)
	go func() { done <- call("sleep") }()
	waitFor(t, func() bool {
		var n int
		_ = admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'SELECT pg_sleep%'`, dbName).Scan(&n)
		return n > 0
	})
	if n := terminate(); n == 0 {
		t.Fatal("no backend terminated")
	}
	wantUnavailable("terminated mid-query", <-done)

	// Idle connections killed under the pool: every call succeeds or is
	// Unavailable, never Internal.
	for i := range 20 {
		if i%4 == 0 {
			terminate()
		}
		if err := call("select"); err != nil {
			wantUnavailable(fmt.Sprintf("select %d after terminate", i), err)
		}
	}

	wantUnavailable("pool on a closed port", call("dead pool"))
	wantUnavailable("peer service down", call("peer down"))

	// Pool exhaustion: both connections busy.
	sleeps := make(chan error, 2)
	for range 2 {
		go func() { sleeps <- call("sleep") }()
	}
	waitFor(t, func() bool {
		var n int
		_ = admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'SELECT pg_sleep%'`, dbName).Scan(&n)
		return n == 2
	})
	wantUnavailable("pool exhausted", call("exhausted"))
	terminate()
	for range 2 {
		wantUnavailable("sleep terminated", <-sleeps)
	}
	if strings.Contains(r.logs.String(), `"internal error"`) {
		t.Errorf("an outage was logged as an internal error:\n%s", r.logs)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached in 10s")
}
