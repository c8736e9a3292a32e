// Package grpcserver builds the gRPC server of every service, so that all of
// them recover from panics, carry request ids, log, count, authenticate and
// map errors the same way, in the same order, and shut down the same way.
// Dial is its client-side counterpart for calls from one service to another.
package grpcserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

const defaultShutdownTimeout = 15 * time.Second

// Options configure a Server.
type Options struct {
	// Name names the server in its start and stop log lines ("token").
	Name string
	// Log is the process logger. The interceptors log with the RPC's
	// context and expect the logger's handler to add the request id from
	// it (package logging does), rather than adding it themselves.
	Log *slog.Logger
	// Auth authenticates every RPC; nil runs without authentication.
	Auth *auth.Authenticator
	// Registerer receives the RPC metrics and is served on /metrics, so it
	// must also be a prometheus.Gatherer (a *prometheus.Registry is both).
	// Nil uses a fresh registry with the Go and process collectors.
	Registerer prometheus.Registerer
	// ExtraUnary and ExtraStream run after the platform's interceptors,
	// right before the handler (e.g. request validation); their errors are
	// mapped like the handler's.
	ExtraUnary  []grpc.UnaryServerInterceptor
	ExtraStream []grpc.StreamServerInterceptor
	// ShutdownTimeout bounds how long in-flight RPCs may run once shutdown
	// starts (default 15s); whatever is left is then canceled.
	ShutdownTimeout time.Duration
}

// Server is a gRPC server with the platform's interceptors, grpc.health.v1
// and reflection, plus a Prometheus /metrics endpoint.
type Server struct {
	name            string
	log             *slog.Logger
	grpc            *grpc.Server
	health          *health.Server
	gatherer        prometheus.Gatherer
	shutdownTimeout time.Duration
}

// New returns a Server; register the service implementations on GRPC()
// before calling Run.
func New(opts Options) *Server {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = r
	}
	gatherer, ok := reg.(prometheus.Gatherer)
	if !ok {
		panic("grpcserver: Options.Registerer must also be a prometheus.Gatherer, e.g. a *prometheus.Registry")
	}
	m := newMetrics(reg)

	// The interceptor chain, outermost first.
	unary := []grpc.UnaryServerInterceptor{
		recoverUnary(log),                // a panic becomes Internal "internal error"; the stack is logged, never sent
		requestIDUnary,                   // the caller's request id (or a fresh one) into ctx and back in the response header
		logUnary(log),                    // one line per RPC: method, code, duration (+ request id from ctx); health checks at debug
		m.unary,                          // grpc_server_handled_total and grpc_server_handling_seconds
		authUnary(opts.Auth),             // the caller's principal into ctx, or Unauthenticated (skipped if Auth is nil)
		errs.UnaryServerInterceptor(log), // every error a handler returns becomes a client-safe status
	}
	// The same chain for streams.
	stream := []grpc.StreamServerInterceptor{
		recoverStream(log),
		requestIDStream,
		logStream(log),
		m.stream,
		authStream(opts.Auth),
		errs.StreamServerInterceptor(log),
	}
	s := &Server{
		name:     opts.Name,
		log:      log,
		health:   health.NewServer(),
		gatherer: gatherer,
		grpc: grpc.NewServer(
			grpc.ChainUnaryInterceptor(append(unary, opts.ExtraUnary...)...),
			grpc.ChainStreamInterceptor(append(stream, opts.ExtraStream...)...),
			// Callers keep one HTTP/2 connection per service, and behind a
			// Kubernetes Service (one virtual IP) that pins all of a caller's
			// calls to one replica. Ending connections after a while (with
			// a grace period for calls in flight) makes callers reconnect and
			// spreads them over replicas added since.
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: maxConnectionAge, MaxConnectionAgeGrace: maxConnectionAgeGrace}),
		),
		shutdownTimeout: opts.ShutdownTimeout,
	}
	if s.shutdownTimeout <= 0 {
		s.shutdownTimeout = defaultShutdownTimeout
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s
}

const (
	maxConnectionAge      = 5 * time.Minute
	maxConnectionAgeGrace = 30 * time.Second
)

// GRPC is the underlying server, to register services on.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Health is the grpc.health.v1 server. Run reports the whole server ("")
// SERVING; services may report their own names, and NOT_SERVING when they
// cannot serve.
func (s *Server) Health() *health.Server { return s.health }

// Run listens on grpcAddr and metricsAddr (empty: no metrics endpoint) and
// serves until ctx is canceled; see Serve.
func (s *Server) Run(ctx context.Context, grpcAddr, metricsAddr string) error {
	lis, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return err
	}
	var metricsLis net.Listener
	if metricsAddr != "" {
		if metricsLis, err = net.Listen("tcp", metricsAddr); err != nil {
			_ = lis.Close()
			return err
		}
	}
	return s.Serve(ctx, lis, metricsLis)
}

// Serve serves gRPC on lis and Prometheus metrics on GET /metrics of
// metricsLis (nil: none), and reports SERVING. When ctx is canceled (wire it
// to SIGTERM and SIGINT with signal.NotifyContext) it reports NOT_SERVING,
// lets in-flight RPCs finish for up to the shutdown timeout, cancels the
// rest, stops the metrics endpoint and returns nil. It returns early with
// an error if a listener fails.
func (s *Server) Serve(ctx context.Context, lis, metricsLis net.Listener) error {
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(lis) }()

	var metricsSrv *http.Server
	if metricsLis != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := metricsSrv.Serve(metricsLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}

	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	attrs := []any{slog.String("server", s.name), slog.String("grpc_addr", lis.Addr().String())}
	if metricsLis != nil {
		attrs = append(attrs, slog.String("metrics_addr", metricsLis.Addr().String()))
	}
	s.log.InfoContext(ctx, "serving", attrs...)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.shutdown(metricsSrv)
	return err
}

func (s *Server) shutdown(metricsSrv *http.Server) {
	s.log.Info("shutting down", slog.String("server", s.name))
	s.health.Shutdown() // NOT_SERVING, so balancers stop sending new work

	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.shutdownTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.log.Warn("in-flight RPCs outlived the shutdown timeout; canceling them",
			slog.String("server", s.name), slog.Duration("timeout", s.shutdownTimeout))
		s.grpc.Stop()
		<-stopped
	}

	// The metrics endpoint goes last, so the drain itself can be scraped.
	if metricsSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = metricsSrv.Shutdown(ctx)
	}
	s.log.Info("stopped", slog.String("server", s.name))
}
