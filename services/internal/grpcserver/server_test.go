package grpcserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/internal/grpcserver"
	"github.com/tokenmanager/tokenmanager/services/internal/requestid"
)

var secret = []byte("0123456789abcdef0123456789abcdef-test")

// logBuffer collects JSON log lines written from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log records whose msg is msg.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ctxHandler adds the request id of the record's context, as the
// platform's logger (package logging) does in production.
type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestid.From(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// running is a Server serving on loopback for one test.
type running struct {
	srv        *grpcserver.Server
	addr       string
	metricsURL string
	logs       *logBuffer
	stop       context.CancelFunc
	exited     chan struct{} // closed when Serve has returned
	err        error         // what Serve returned
}

// wait returns Serve's result, or fails the test if Serve is still running
// after d.
func (r *running) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-r.exited:
		return r.err
	case <-time.After(d):
		t.Fatalf("Serve still running after %v", d)
		return nil
	}
}

func start(t *testing.T, svc *testService, opts grpcserver.Options) *running {
	t.Helper()
	logs := &logBuffer{}
	if opts.Log == nil {
		opts.Log = slog.New(ctxHandler{slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})})
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	srv := grpcserver.New(opts)
	srv.GRPC().RegisterService(&testServiceDesc, svc)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{
		srv: srv, addr: lis.Addr().String(), metricsURL: "http://" + mlis.Addr().String() + "/metrics",
		logs: logs, stop: cancel, exited: make(chan struct{}),
	}
	go func() {
		r.err = srv.Serve(ctx, lis, mlis)
		close(r.exited)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.exited:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	})
	return r
}

func (r *running) client(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(r.addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func (r *running) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(r.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	return string(body)
}

func TestPanicIsRecovered(t *testing.T) {
	t.Parallel()
	r := start(t, &testService{
		echo: func(context.Context, string) (string, error) {
			panic("nil map in handler; secret=hunter2")
		},
		repeat: func(context.Context, string, func(string) error) error {
			panic("stream handler broke; secret=hunter2")
		},
	}, grpcserver.Options{Name: "test"})
	conn := r.client(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), requestid.MetadataKey, "req-panic")

	_, err := echo(ctx, conn, "x")
	st := status.Convert(err)
	if st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("unary: got %v %q, want Internal \"internal error\"", st.Code(), st.Message())
	}
	stream, err := repeat(ctx, conn, "x")
	if err == nil {
		err = stream.RecvMsg(new(wrapperspb.StringValue))
	}
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("stream: got %v %q", st.Code(), st.Message())
	}

	// The server keeps serving.
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("after panic: %v", err)
	}
	panics := r.logs.lines(t, "panic in RPC")
	if len(panics) != 2 {
		t.Fatalf("panic log lines = %d, want 2: %s", len(panics), r.logs)
	}
	if p := panics[0]; p["request_id"] != "req-panic" || !strings.Contains(p["stack"].(string), "goroutine") ||
		!strings.Contains(p["panic"].(string), "nil map") {
		t.Errorf("panic log = %v", p)
	}
	// Panics are still logged and counted as the RPC's outcome.
	for _, l := range r.logs.lines(t, "rpc") {
		if l["code"] != "Internal" {
			t.Errorf("rpc log = %v, want code Internal", l)
		}
	}
	if m := r.metrics(t); !strings.Contains(m, `grpc_server_handled_total{code="Internal",method="Echo",service="test.v1.Test"} 1`) {
		t.Errorf("panic not counted:\n%s", grep(m, "grpc_server_handled_total"))
	}
}

func TestErrorsAreMapped(t *testing.T) {
	t.Parallel()
	pgErr := &pgconn.PgError{
		Severity: "ERROR", Code: "23505", ConstraintName: "tokens_name_key",
		Message: `duplicate key value violates unique constraint "tokens_name_key"`,
		Detail:  "Key (name)=(hunter2) already exists.",
	}
	r := start(t, &testService{
		echo: func(_ context.Context, in string) (string, error) {
			switch in {
			case "pg":
				return "", fmt.Errorf("insert token: %w", pgErr)
			case "domain":
				return "", fmt.Errorf("lookup: %w", errs.NotFound("Token not found"))
			}
			return "", errors.New("open /var/lib/tm/key.pem: permission denied")
		},
		repeat: func(context.Context, string, func(string) error) error {
			return fmt.Errorf("stream: %w", &pgconn.PgError{Code: "42P01", Message: `relation "token.tokens" does not exist`})
		},
	}, grpcserver.Options{Name: "test"})
	conn := r.client(t)

	for in, want := range map[string]struct {
		code codes.Code
		msg  string
	}{
		"pg":     {codes.AlreadyExists, "already exists"},
		"domain": {codes.NotFound, "Token not found"},
		"other":  {codes.Internal, "internal error"},
	} {
		_, err := echo(context.Background(), conn, in)
		st := status.Convert(err)
		if st.Code() != want.code || st.Message() != want.msg {
			t.Errorf("%s: got %v %q, want %v %q", in, st.Code(), st.Message(), want.code, want.msg)
		}
	}
	stream, err := repeat(context.Background(), conn, "x")
	if err == nil {
		err = stream.RecvMsg(new(wrapperspb.StringValue))
	}
	if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "relation") {
		t.Errorf("stream: got %v %q", st.Code(), st.Message())
	}
	// What the client did not see is in the log.
	if !strings.Contains(r.logs.String(), "permission denied") || !strings.Contains(r.logs.String(), "token.tokens") {
		t.Errorf("internal errors not logged:\n%s", r.logs)
	}
}

func TestRequestIDPropagates(t *testing.T) {
	t.Parallel()
	// downstream requires a service credential and reports the request id
	// and the caller it saw.
	downstream := start(t, &testService{
		echo: func(ctx context.Context, _ string) (string, error) {
			p, _ := auth.FromContext(ctx)
			return requestid.From(ctx) + " " + string(p.Kind) + ":" + p.ID, nil
		},
	}, grpcserver.Options{Name: "downstream", Auth: &auth.Authenticator{ServiceSecret: secret}})

	toDownstream, err := grpcserver.Dial(context.Background(), downstream.addr, nil, "upstream", secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = toDownstream.Close() })

	upstream := start(t, &testService{
		echo: func(ctx context.Context, _ string) (string, error) {
			got, err := echo(ctx, toDownstream, "")
			return requestid.From(ctx) + " -> " + got, err
		},
		repeat: func(ctx context.Context, _ string, send func(string) error) error {
			return send(requestid.From(ctx))
		},
	}, grpcserver.Options{Name: "upstream"})
	conn := upstream.client(t)

	ctx := metadata.AppendToOutgoingContext(context.Background(), requestid.MetadataKey, "req-42")
	var header metadata.MD
	got, err := echo(ctx, conn, "", grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	if want := "req-42 -> req-42 service:upstream"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if h := header.Get(requestid.MetadataKey); len(h) != 1 || h[0] != "req-42" {
		t.Errorf("response header %s = %v", requestid.MetadataKey, h)
	}

	// No id (or an unacceptable one) from the caller: a fresh one is made,
	// echoed and passed on.
	for _, sent := range []string{"", "bad id with spaces"} {
		ctx := context.Background()
		if sent != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, requestid.MetadataKey, sent)
		}
		got, err := echo(ctx, conn, "", grpc.Header(&header))
		if err != nil {
			t.Fatal(err)
		}
		id := header.Get(requestid.MetadataKey)
		if len(id) != 1 || len(id[0]) != 32 || got != id[0]+" -> "+id[0]+" service:upstream" {
			t.Errorf("sent %q: got %q with header %v", sent, got, id)
		}
	}

	// Streams get one too.
	stream, err := repeat(ctx, conn, "")
	if err != nil {
		t.Fatal(err)
	}
	out := new(wrapperspb.StringValue)
	if err := stream.RecvMsg(out); err != nil || out.GetValue() != "req-42" {
		t.Errorf("stream: %q, %v", out.GetValue(), err)
	}

	// Every RPC line carries the id.
	lines := upstream.logs.lines(t, "rpc")
	if len(lines) == 0 || lines[0]["request_id"] != "req-42" || lines[0]["method"] != echoMethod ||
		lines[0]["code"] != "OK" || lines[0]["duration_ms"] == nil {
		t.Errorf("rpc log = %v", lines)
	}
}

func TestDialNeedsSecret(t *testing.T) {
	t.Parallel()
	if _, err := grpcserver.Dial(context.Background(), "127.0.0.1:1", nil, "usage", nil); err == nil {
		t.Error("Dial without a secret succeeded")
	}
}

func TestAuthInChain(t *testing.T) {
	t.Parallel()
	r := start(t, &testService{
		echo: func(context.Context, string) (string, error) { return "ok", nil },
	}, grpcserver.Options{Name: "test", Auth: &auth.Authenticator{
		ServiceSecret: secret,
		Public:        map[string]bool{healthpb.Health_Check_FullMethodName: true},
	}})
	conn := r.client(t)
	if _, err := echo(context.Background(), conn, ""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without credential: %v", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("public health check: %v", err)
	}
	if m := r.metrics(t); !strings.Contains(m, `grpc_server_handled_total{code="Unauthenticated",method="Echo",service="test.v1.Test"} 1`) {
		t.Errorf("rejected call not counted:\n%s", grep(m, "grpc_server_handled_total"))
	}
}

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	r := start(t, &testService{
		echo: func(_ context.Context, in string) (string, error) {
			if in == "missing" {
				return "", errs.NotFound("Token not found")
			}
			return in, nil
		},
	}, grpcserver.Options{Name: "test"})
	conn := r.client(t)
	for _, in := range []string{"a", "b", "missing"} {
		_, _ = echo(context.Background(), conn, in)
	}
	m := r.metrics(t)
	for _, want := range []string{
		`grpc_server_handled_total{code="OK",method="Echo",service="test.v1.Test"} 2`,
		`grpc_server_handled_total{code="NotFound",method="Echo",service="test.v1.Test"} 1`,
		`grpc_server_handling_seconds_count{method="Echo",service="test.v1.Test"} 3`,
		`grpc_server_handling_seconds_bucket{method="Echo",service="test.v1.Test",le="+Inf"} 3`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "grpc_server"))
		}
	}
}

func TestNilRegistererServesGoMetrics(t *testing.T) {
	t.Parallel()
	srv := grpcserver.New(grpcserver.Options{Name: "test"})
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	mlis, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, mlis) }()
	defer func() { cancel(); <-done }()

	r := &running{metricsURL: "http://" + mlis.Addr().String() + "/metrics"}
	if m := r.metrics(t); !strings.Contains(m, "go_goroutines") {
		t.Errorf("no Go metrics:\n%.500s", m)
	}
}

func TestReflectionAndHealthRegistered(t *testing.T) {
	t.Parallel()
	srv := grpcserver.New(grpcserver.Options{})
	info := srv.GRPC().GetServiceInfo()
	for _, name := range []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if _, ok := info[name]; !ok {
			t.Errorf("%s not registered; have %v", name, info)
		}
	}
}

func TestHealthChecksLogAtDebug(t *testing.T) {
	t.Parallel()
	r := start(t, &testService{echo: func(context.Context, string) (string, error) { return "", nil }}, grpcserver.Options{})
	conn := r.client(t)
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := echo(context.Background(), conn, ""); err != nil {
		t.Fatal(err)
	}
	lines := r.logs.lines(t, "rpc") // the logger is at info
	if len(lines) != 1 || lines[0]["method"] != echoMethod {
		t.Errorf("rpc lines at info = %v, want only Echo", lines)
	}
}

func TestHealthDuringShutdown(t *testing.T) {
	t.Parallel()
	r := start(t, &testService{}, grpcserver.Options{})
	conn := r.client(t)

	watchCtx, endWatch := context.WithCancel(context.Background())
	defer endWatch()
	watch, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("before shutdown: %v, %v", resp, err)
	}

	r.stop()
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("during shutdown: %v, %v", resp, err)
	}
	endWatch() // the watch is an in-flight RPC; ending it lets the drain finish
	if err := r.wait(t, 10*time.Second); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func TestGracefulShutdownFinishesInFlightRPC(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	r := start(t, &testService{
		echo: func(ctx context.Context, in string) (string, error) {
			close(entered)
			select {
			case <-release:
				return "finished " + in, nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		},
	}, grpcserver.Options{})
	conn := r.client(t)

	result := make(chan error, 1)
	go func() {
		got, err := echo(context.Background(), conn, "work")
		if err == nil && got != "finished work" {
			err = fmt.Errorf("got %q", got)
		}
		result <- err
	}()
	<-entered
	r.stop()

	// Shutdown waits for the RPC…
	select {
	case <-r.exited:
		t.Fatalf("Serve returned (%v) while an RPC was in flight", r.err)
	case <-time.After(200 * time.Millisecond):
	}
	// …and new connections are refused meanwhile.
	late, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	lateCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := echo(lateCtx, late, "late"); err == nil {
		t.Error("a new connection was served during shutdown")
	}

	close(release)
	if err := <-result; err != nil {
		t.Errorf("in-flight RPC: %v", err)
	}
	if err := r.wait(t, 10*time.Second); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func TestShutdownTimeoutCancelsStragglers(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	r := start(t, &testService{
		echo: func(ctx context.Context, _ string) (string, error) {
			close(entered)
			<-ctx.Done() // never finishes on its own
			return "", ctx.Err()
		},
	}, grpcserver.Options{ShutdownTimeout: 200 * time.Millisecond})
	conn := r.client(t)

	result := make(chan error, 1)
	go func() {
		_, err := echo(context.Background(), conn, "")
		result <- err
	}()
	<-entered
	began := time.Now()
	r.stop()
	_ = r.wait(t, 10*time.Second)
	if d := time.Since(began); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("shutdown took %v, want about the 200ms timeout", d)
	}
	if err := <-result; err == nil {
		t.Error("straggler RPC succeeded")
	}
}

func TestRunReportsListenErrors(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	srv := grpcserver.New(grpcserver.Options{})
	if err := srv.Run(context.Background(), lis.Addr().String(), ""); err == nil {
		t.Error("Run on a taken port succeeded")
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
