package grpcserver

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/requestid"
)

// Dial returns a client connection from the service serviceName to another
// service at addr. Every call carries a fresh service credential signed
// with secret (never the original caller's credential) and the request id
// of its context. The connection is made lazily, so services may start in
// any order.
func Dial(ctx context.Context, addr string, log *slog.Logger, serviceName string, secret []byte) (*grpc.ClientConn, error) {
	if serviceName == "" || len(secret) == 0 {
		return nil, errors.New("grpcserver: Dial needs a service name and a service secret")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := grpc.NewClient(addr,
		// Loopback or cluster network; the credential is short-lived.
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.ServiceCallCredentials{Secret: secret, Service: serviceName}),
		grpc.WithChainUnaryInterceptor(clientUnary(log)),
		grpc.WithChainStreamInterceptor(clientStream),
	)
	if err != nil {
		return nil, err
	}
	log.DebugContext(ctx, "grpc client created", slog.String("target", addr))
	return conn, nil
}

// clientUnary forwards the request id and logs failed calls at debug (the
// caller decides what a failure means and logs that).
func clientUnary(log *slog.Logger) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(requestid.Outgoing(ctx), method, req, reply, cc, opts...)
		if err != nil {
			log.LogAttrs(ctx, slog.LevelDebug, "outgoing rpc failed",
				slog.String("method", method),
				slog.String("target", cc.Target()),
				slog.String("code", status.Code(err).String()),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
		}
		return err
	}
}

// clientStream forwards the request id.
func clientStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(requestid.Outgoing(ctx), desc, cc, method, opts...)
}
