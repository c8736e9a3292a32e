package errs

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
)

// grpcStatus is implemented by the errors of package status.
type grpcStatus interface{ GRPCStatus() *status.Status }

// Client-facing messages for failures whose real text must stay inside.
const (
	msgInternal = "internal error"
	msgExists   = "already exists"
	msgConflict = "concurrent update conflict, please retry"
	// msgUnavailable: the database could not be reached; safe to retry.
	msgUnavailable = "Service temporarily unavailable, please retry"
)

// ToStatus converts err into the error a gRPC client may see:
//
//   - nil stays nil;
//   - a domain error (see Error) gets its kind's code and its message;
//   - a gRPC status (for example from a call to another service) keeps its
//     code and its own message, without the text it was wrapped in;
//   - context.Canceled becomes Canceled; context.DeadlineExceeded becomes
//     DeadlineExceeded when ctx (the caller's) has expired, and Unavailable
//     when a deadline of the server's own ran out (pool exhaustion);
//   - a lost or refused database connection, PostgreSQL shutting down or
//     out of connections (see IsUnavailable) becomes Unavailable;
//   - a PostgreSQL unique violation becomes AlreadyExists and a
//     serialization failure or deadlock becomes Aborted, both with generic
//     messages; any other database error is internal;
//   - anything else becomes Internal "internal error".
//
// Internal errors are logged on log with ctx, so the detail a client does
// not see can be found by an operator; the platform's logger adds the
// request id of ctx to the line.
func ToStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	var de *Error
	if errors.As(err, &de) && de.Kind != nil && de.Kind.code != codes.OK {
		return status.Error(de.Kind.code, de.Msg)
	}
	var se grpcStatus
	if errors.As(err, &se) {
		if st := se.GRPCStatus(); st.Code() != codes.OK {
			if _, direct := err.(grpcStatus); direct {
				return err
			}
			return st.Err() // without the text it was wrapped in
		}
	}
	if IsUnavailable(err) {
		// The database went away (restart, failover, connection limit):
		// the client may retry, so this is not an internal error.
		logger(log).LogAttrs(ctx, slog.LevelWarn, "dependency unavailable mapped to Unavailable",
			slog.String("error", err.Error()))
		return status.Error(codes.Unavailable, msgUnavailable)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		// A deadline of the server's own ran out while the caller's has
		// not: waiting for a pool connection (every one busy, or none
		// could be opened) or a dependency took too long. Retryable.
		logger(log).LogAttrs(ctx, slog.LevelWarn, "server-side deadline mapped to Unavailable",
			slog.String("error", err.Error()))
		return status.Error(codes.Unavailable, msgUnavailable)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	switch {
	case db.IsUniqueViolation(err):
		// Usually a race the handler's own existence check lost; the
		// constraint name says which one.
		logger(log).LogAttrs(ctx, slog.LevelInfo, "unique violation mapped to AlreadyExists",
			slog.String("constraint", db.ConstraintName(err)))
		return status.Error(codes.AlreadyExists, msgExists)
	case db.IsSerializationFailure(err):
		logger(log).LogAttrs(ctx, slog.LevelInfo, "transaction conflict mapped to Aborted",
			slog.String("sqlstate", db.SQLState(err)))
		return status.Error(codes.Aborted, msgConflict)
	}
	logger(log).LogAttrs(ctx, slog.LevelError, "internal error", slog.String("error", err.Error()))
	return status.Error(codes.Internal, msgInternal)
}

// UnaryServerInterceptor applies ToStatus to every error a unary handler
// returns. It belongs last in the chain, right before the handler.
func UnaryServerInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		return resp, ToStatus(ctx, log, err)
	}
}

// StreamServerInterceptor applies ToStatus to every error a streaming
// handler returns.
func StreamServerInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return ToStatus(ss.Context(), log, handler(srv, ss))
	}
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
