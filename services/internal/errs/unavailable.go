package errs

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
)

// IsUnavailable reports whether err means that a dependency (the database,
// usually) could not be reached or is going away, rather than that the
// request was wrong or the code is broken: the client may retry and should
// see Unavailable, not Internal. It recognises
//
//   - a lost connection: io.EOF/io.ErrUnexpectedEOF, net errors, ECONNRESET,
//     ECONNREFUSED, EPIPE, pgconn connect errors, errors pgconn reports as
//     safe to retry, and pgx's "conn closed";
//   - PostgreSQL shutting down or refusing connections: SQLSTATE 57P01
//     admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
//     class 08 connection exceptions and 53300 too_many_connections;
//   - a pool that could not open a connection before the deadline
//     (pgconn's ConnectError wrapping the context's error).
//
// A domain error or a gRPC status is not looked into: ToStatus takes those
// as they are.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if db.IsServerError(err) {
		// The server answered: only its going away is transient here.
		return db.IsServerGoingAway(err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		// Includes a pool that could not open a connection before the
		// deadline ("failed to connect to ...: timeout: context deadline
		// exceeded").
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller's own deadline or cancellation (pgconn also reports
		// those as safe to retry); ToStatus maps them by themselves.
		return false
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return true
	}
	var ne net.Error // *net.OpError, DNS and timeout errors alike
	if errors.As(err, &ne) {
		return true
	}
	// pgx reports a query on a connection it already closed as a plain
	// error with this text (pgconn's and pgxpool's "conn closed").
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "closed pool")
}
