package errs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// closedPort returns a local TCP port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// realConnectError is what pgconn returns when no server listens.
func realConnectError(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, "postgres://postgres@"+closedPort(t)+"/postgres?sslmode=disable&connect_timeout=2")
	if err == nil {
		_ = c.Close(ctx)
		t.Fatal("connected to a closed port")
	}
	return err
}

// realClosedConnError is what a query on a connection that was closed
// returns ("conn closed").
func realClosedConnError(t *testing.T) error {
	t.Helper()
	// A pgconn that never connected cannot be built, so use a pool on a
	// closed port: its Query fails with a ConnectError, and a closed pool
	// fails with "closed pool".
	cfg, err := pgxpool.ParseConfig("postgres://postgres@" + closedPort(t) + "/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	_, err = pool.Exec(context.Background(), "SELECT 1")
	if err == nil {
		t.Fatal("query on a closed pool succeeded")
	}
	return err
}

func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	connectErr := realConnectError(t)
	var ce *pgconn.ConnectError
	if !errors.As(connectErr, &ce) {
		t.Fatalf("pgconn.Connect error is %T, not a *pgconn.ConnectError: %v", connectErr, connectErr)
	}
	// A connect that runs out of time: ConnectError wrapping the deadline.
	deadlineCtx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-deadlineCtx.Done()
	_, timeoutConnectErr := pgconn.Connect(deadlineCtx, "postgres://postgres@"+closedPort(t)+"/postgres?sslmode=disable")
	if timeoutConnectErr == nil {
		t.Fatal("connect with an expired context succeeded")
	}

	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"unexpected EOF wrapped twice", fmt.Errorf("team: admin key: %w", fmt.Errorf("read: %w", io.ErrUnexpectedEOF)), true},
		{"EOF", fmt.Errorf("query: %w", io.EOF), true},
		{"pgconn connect error (closed port)", connectErr, true},
		{"pgconn connect error wrapped", fmt.Errorf("lookup: %w", connectErr), true},
		{"pgconn connect error on an expired context", timeoutConnectErr, true},
		{"closed pool", realClosedConnError(t), true},
		{"conn closed text", errors.New("conn closed"), true},
		{"net.OpError", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"ECONNREFUSED", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{"EPIPE", fmt.Errorf("write: %w", syscall.EPIPE), true},
		{"net.ErrClosed", fmt.Errorf("read: %w", net.ErrClosed), true},
		{"57P01 admin_shutdown", pgErr("57P01"), true},
		{"57P02 crash_shutdown", pgErr("57P02"), true},
		{"57P03 cannot_connect_now", fmt.Errorf("x: %w", pgErr("57P03")), true},
		{"08006 connection_failure", pgErr("08006"), true},
		{"08P01 protocol_violation (class 08)", pgErr("08P01"), true},
		{"53300 too_many_connections", pgErr("53300"), true},
		{"23505 unique violation", pgErr("23505"), false},
		{"42P01 undefined table", pgErr("42P01"), false},
		{"57014 query_canceled", pgErr("57014"), false},
		{"no rows", pgx.ErrNoRows, false},
		{"plain error", errors.New("boom"), false},
		{"context canceled", fmt.Errorf("q: %w", context.Canceled), false},
		{"context deadline", context.DeadlineExceeded, false},
	}
	for _, tc := range tests {
		if got := errs.IsUnavailable(tc.err); got != tc.want {
			t.Errorf("%s: IsUnavailable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestToStatusUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, err := range []error{
		realConnectError(t),
		fmt.Errorf("admin key lookup: %w", io.ErrUnexpectedEOF),
		pgErr("57P01"), pgErr("53300"),
		// A gRPC dependency that is down keeps its code through wrapping.
		fmt.Errorf("calling team: %w", status.Error(codes.Unavailable, "connection refused")),
	} {
		st := status.Convert(errs.ToStatus(ctx, nil, err))
		if st.Code() != codes.Unavailable {
			t.Errorf("ToStatus(%v) = %v %q, want Unavailable", err, st.Code(), st.Message())
		}
		for _, bit := range pgSecretBits {
			if strings.Contains(st.Message(), bit) {
				t.Errorf("message %q leaks %q", st.Message(), bit)
			}
		}
	}
}

// The caller's own deadline stays DeadlineExceeded; only a deadline of the
// server's own (pool acquire) is Unavailable.
func TestToStatusCallerDeadline(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if st := status.Convert(errs.ToStatus(ctx, nil, fmt.Errorf("q: %w", context.DeadlineExceeded))); st.Code() != codes.DeadlineExceeded {
		t.Errorf("caller's deadline: got %v", st.Code())
	}
	// Pool exhaustion: every connection is held, Acquire waits for its
	// own, shorter deadline while the caller's is still far away.
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+closedPort(t)+"/postgres?sslmode=disable&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	acq, cancelAcq := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelAcq()
	_, err = pool.Acquire(acq)
	if err == nil {
		t.Fatal("acquired from a pool on a closed port")
	}
	if st := status.Convert(errs.ToStatus(context.Background(), nil, err)); st.Code() != codes.Unavailable {
		t.Errorf("pool acquire deadline: got %v %q (%v)", st.Code(), st.Message(), err)
	}
}
