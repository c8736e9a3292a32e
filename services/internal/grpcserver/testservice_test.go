package grpcserver_test

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testService is a hand-written gRPC service (no generated code needed):
// test.v1.Test/Echo is unary and test.v1.Test/Repeat streams from the
// server. Each test says what the handlers do.
type testService struct {
	echo   func(ctx context.Context, in string) (string, error)
	repeat func(ctx context.Context, in string, send func(string) error) error
}

const (
	echoMethod   = "/test.v1.Test/Echo"
	repeatMethod = "/test.v1.Test/Repeat"
)

var testServiceDesc = grpc.ServiceDesc{
	ServiceName: "test.v1.Test",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				out, err := srv.(*testService).echo(ctx, req.(*wrapperspb.StringValue).GetValue())
				if err != nil {
					return nil, err
				}
				return wrapperspb.String(out), nil
			}
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: echoMethod}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Repeat",
		ServerStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			send := func(s string) error { return ss.SendMsg(wrapperspb.String(s)) }
			return srv.(*testService).repeat(ss.Context(), in.GetValue(), send)
		},
	}},
}

func echo(ctx context.Context, conn grpc.ClientConnInterface, in string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, echoMethod, wrapperspb.String(in), out, opts...)
	return out.GetValue(), err
}

func repeat(ctx context.Context, conn grpc.ClientConnInterface, in string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := conn.NewStream(ctx, &testServiceDesc.Streams[0], repeatMethod, opts...)
	if err != nil {
		return nil, err
	}
	if err := s.SendMsg(wrapperspb.String(in)); err != nil {
		return nil, err
	}
	return s, s.CloseSend()
}
