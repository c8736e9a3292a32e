package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/requestid"
)

// recoverUnary turns a panic into Internal "internal error". Being
// outermost it also catches panics in the other interceptors; the inner
// ones still log and count the RPC, as Internal, while the panic unwinds.
func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (_ any, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = recovered(ctx, log, info.FullMethod, r)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = recovered(ss.Context(), log, info.FullMethod, r)
			}
		}()
		return handler(srv, ss)
	}
}

// recovered logs a panic with its stack and returns what the client gets.
func recovered(ctx context.Context, log *slog.Logger, method string, r any) error {
	log.LogAttrs(ctx, slog.LevelError, "panic in RPC",
		slog.String("method", method),
		// The request id interceptor runs inside this one, so ctx has no id
		// yet: take the one the caller sent (the gateway always sends one).
		slog.String("request_id", callerRequestID(ctx)),
		slog.String("panic", fmt.Sprint(r)),
		slog.String("stack", string(debug.Stack())))
	return status.Error(codes.Internal, "internal error")
}

func callerRequestID(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(requestid.MetadataKey); len(v) > 0 && requestid.Valid(v[0]) {
		return v[0]
	}
	return ""
}

// requestIDUnary puts the caller's request id, or a fresh one, in ctx and
// in the response header, so a client can quote it.
func requestIDUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := requestid.FromIncoming(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestid.MetadataKey, id))
	return handler(requestid.With(ctx, id), req)
}

func requestIDStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id := requestid.FromIncoming(ss.Context())
	_ = ss.SetHeader(metadata.Pairs(requestid.MetadataKey, id))
	return handler(srv, &serverStream{ServerStream: ss, ctx: requestid.With(ss.Context(), id)})
}

// logUnary writes one line per RPC.
func logUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start, returned := time.Now(), false
		defer func() { logRPC(ctx, log, info.FullMethod, code(err, returned), time.Since(start)) }()
		resp, err = handler(ctx, req)
		returned = true
		return resp, err
	}
}

func logStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		start, returned := time.Now(), false
		defer func() { logRPC(ss.Context(), log, info.FullMethod, code(err, returned), time.Since(start)) }()
		err = handler(srv, ss)
		returned = true
		return err
	}
}

// code is the status an RPC ends with; a handler that did not return
// panicked, which the recovery interceptor turns into Internal.
func code(err error, returned bool) codes.Code {
	if !returned {
		return codes.Internal
	}
	return status.Code(err)
}

func logRPC(ctx context.Context, log *slog.Logger, method string, c codes.Code, d time.Duration) {
	level := slog.LevelInfo
	switch {
	case c == codes.Internal || c == codes.Unknown || c == codes.DataLoss:
		level = slog.LevelError
	case strings.HasPrefix(method, "/grpc.health.v1.Health/"):
		level = slog.LevelDebug // probes every few seconds would drown the rest
	}
	log.LogAttrs(ctx, level, "rpc",
		slog.String("method", method),
		slog.String("code", c.String()),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000))
}

func authUnary(a *auth.Authenticator) grpc.UnaryServerInterceptor {
	if a == nil {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return handler(ctx, req)
		}
	}
	return a.UnaryInterceptor()
}

func authStream(a *auth.Authenticator) grpc.StreamServerInterceptor {
	if a == nil {
		return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, ss)
		}
	}
	return a.StreamInterceptor()
}

// serverStream is a grpc.ServerStream with a replaced context.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
