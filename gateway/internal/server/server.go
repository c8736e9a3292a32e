// Package server is the REST facade: it serves the v2.7 contract's paths by
// calling the five services over gRPC (so every request passes the services'
// own interceptors, authentication included), and adds the HTTP concerns:
// CORS, the {"detail": ...} error body, request ids, body limits, metrics and
// the OpenAPI docs. It owns no data and makes no authorization decision.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/tokenmanager/tokenmanager/gateway"
	auditgw "github.com/tokenmanager/tokenmanager/gateway/gen/tokenmanager/audit/v1"
	healthgw "github.com/tokenmanager/tokenmanager/gateway/gen/tokenmanager/health/v1"
	teamgw "github.com/tokenmanager/tokenmanager/gateway/gen/tokenmanager/team/v1"
	tokengw "github.com/tokenmanager/tokenmanager/gateway/gen/tokenmanager/token/v1"
	usagegw "github.com/tokenmanager/tokenmanager/gateway/gen/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/gateway/internal/config"
	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
)

// defaultRPCTimeout bounds a unary call that carries no deadline of its own.
const defaultRPCTimeout = 30 * time.Second

// Server is the gateway.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	metrics  *httpMetrics
	registry *prometheus.Registry
	patterns []pattern
	conns    []*grpc.ClientConn
	handler  http.Handler

	usage usagev1.UsageServiceClient
	audit auditv1.AuditServiceClient
}

// New dials the services (lazily: a service that is down answers 503 per
// request, it does not stop the gateway) and builds the HTTP handler.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: log, registry: prometheus.NewRegistry()}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = newHTTPMetrics(s.registry)

	routes, err := gateway.Routes()
	if err != nil {
		return nil, err
	}
	s.patterns = newPatterns(routes)

	mux := runtime.NewServeMux(
		// Proto field names, unpopulated fields emitted, 64-bit ints as numbers:
		// the JSON the v2.7 dashboard reads.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newContractMarshaler()),
		// Every error becomes {"detail": "..."} with the matching HTTP status.
		runtime.WithErrorHandler(errorHandler(log)),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		// Only what the services need crosses over: Authorization (always
		// forwarded by grpc-gateway), the user agent for audit, X-Forwarded-For
		// (added by grpc-gateway) for the client IP. Cookies and the rest stay here.
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		// The request id travels as metadata, from the id the middleware chose.
		runtime.WithMetadata(func(ctx context.Context, _ *http.Request) metadata.MD {
			return metadata.Pairs("x-request-id", requestIDFrom(ctx))
		}),
		// Services' response metadata is internal: no Grpc-Metadata-* headers.
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
		// API answers may hold secrets (create, reveal): never cache them.
		runtime.WithForwardResponseOption(func(_ context.Context, w http.ResponseWriter, _ proto.Message) error {
			w.Header().Set("Cache-Control", "no-store")
			return nil
		}),
	)

	dial := func(addr string) (*grpc.ClientConn, error) {
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithChainUnaryInterceptor(defaultTimeout),
		)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		s.conns = append(s.conns, conn)
		return conn, nil
	}
	register := []struct {
		addr string
		reg  func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error
		keep func(*grpc.ClientConn)
	}{
		{cfg.TokenAddr, tokengw.RegisterTokenServiceHandler, nil},
		{cfg.TeamAddr, teamgw.RegisterTeamServiceHandler, nil},
		{cfg.AuditAddr, auditgw.RegisterAuditServiceHandler, func(c *grpc.ClientConn) { s.audit = auditv1.NewAuditServiceClient(c) }},
		{cfg.UsageAddr, usagegw.RegisterUsageServiceHandler, func(c *grpc.ClientConn) { s.usage = usagev1.NewUsageServiceClient(c) }},
		{cfg.HealthAddr, healthgw.RegisterHealthServiceHandler, nil},
	}
	for _, r := range register {
		conn, err := dial(r.addr)
		if err != nil {
			s.Close()
			return nil, err
		}
		if err := r.reg(ctx, mux, conn); err != nil {
			s.Close()
			return nil, err
		}
		if r.keep != nil {
			r.keep(conn)
		}
	}

	top := http.NewServeMux()
	top.HandleFunc("GET /{$}", serveRoot)
	top.HandleFunc("GET /docs", serveDocs)
	top.HandleFunc("GET /redoc", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/docs", http.StatusMovedPermanently)
	})
	top.HandleFunc("GET /openapi.json", serveOpenAPI)
	top.HandleFunc("POST /api/usage-log", s.serveUsageLog)
	top.HandleFunc("GET /api/dashboard/audit-logs/export", s.serveAuditExport)
	top.Handle("/", mux)
	s.handler = s.middleware(top)
	return s, nil
}

func incomingHeader(key string) (string, bool) {
	if http.CanonicalHeaderKey(key) == "User-Agent" {
		return "grpcgateway-user-agent", true
	}
	return "", false
}

// defaultTimeout gives unary calls without a deadline a bounded one, so a
// stuck service cannot pin gateway goroutines forever.
func defaultTimeout(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultRPCTimeout)
		defer cancel()
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Handler is the gateway's whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

// Close closes the service connections.
func (s *Server) Close() {
	for _, c := range s.conns {
		_ = c.Close()
	}
}

// Run serves HTTP on cfg.HTTPAddr and metrics on cfg.MetricsAddr until ctx is
// cancelled, then drains in-flight requests (bounded) and returns.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	api := &http.Server{
		Addr:              s.cfg.HTTPAddr,
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mets := &http.Server{Addr: s.cfg.MetricsAddr, Handler: metricsMux, ReadHeaderTimeout: 10 * time.Second}

	apiLn, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.HTTPAddr, err)
	}
	metLn, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		_ = apiLn.Close()
		return fmt.Errorf("listen %s: %w", s.cfg.MetricsAddr, err)
	}
	s.log.Info("gateway listening", "http", apiLn.Addr().String(), "metrics", metLn.Addr().String())

	errc := make(chan error, 2)
	go func() { errc <- api.Serve(apiLn) }()
	go func() { errc <- mets.Serve(metLn) }()

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			_ = api.Close()
			_ = mets.Close()
			return err
		}
	}
	s.log.Info("gateway shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = api.Shutdown(shutdownCtx)
	_ = mets.Shutdown(shutdownCtx)
	return err
}
