package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	healthv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/health/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/grpcserver"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
	"github.com/tokenmanager/tokenmanager/services/internal/teamclient"
)

// PublicMethods need no credential: liveness and readiness probes, the
// anonymous health endpoints of the contract, and usage ingest (which
// carries an HMAC signature of its own instead).
var PublicMethods = map[string]bool{
	"/grpc.health.v1.Health/Check":                          true,
	"/grpc.health.v1.Health/Watch":                          true,
	healthv1.HealthService_Check_FullMethodName:             true,
	healthv1.HealthService_GetDetailedHealth_FullMethodName: true,
	usagev1.UsageService_Ingest_FullMethodName:              true,
}

// OpenDB connects to DATABASE_URL and checks that the schemas of sets are
// migrated to what this binary expects (tmctl migrate applies them; a
// service never migrates on its own at start-up).
func OpenDB(ctx context.Context, c Common, sets ...migrate.Set) (*pgxpool.Pool, error) {
	pool, err := db.Connect(ctx, c.DatabaseURL.Reveal(), db.WithApplicationName("tm-"+c.Name))
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		if err := migrate.Check(ctx, pool, s); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return pool, nil
}

// Dial connects to another service with this service's own credential.
func Dial(ctx context.Context, c Common, log *slog.Logger, addr string) (*grpc.ClientConn, error) {
	return grpcserver.Dial(ctx, addr, log, c.Name, []byte(c.ServiceSecret.Reveal()))
}

// Authenticator builds the authentication every service runs: Clerk session
// tokens verified locally (when Clerk is configured), admin keys and users
// resolved to roles by resolver, service credentials verified with
// TM_SERVICE_SECRET.
func Authenticator(c Common, log *slog.Logger, resolver auth.Resolver) (*auth.Authenticator, error) {
	a := &auth.Authenticator{
		Resolver:      resolver,
		ServiceSecret: []byte(c.ServiceSecret.Reveal()),
		Public:        PublicMethods,
		Log:           log,
	}
	if c.Clerk.SecretKey.Reveal() != "" {
		v, err := auth.NewClerkVerifier(auth.ClerkConfig{
			APIURL:         c.Clerk.APIURL,
			SecretKey:      c.Clerk.SecretKey.Reveal(),
			AllowedOrigins: c.Clerk.AllowedOrigins,
		})
		if err != nil {
			return nil, fmt.Errorf("clerk verifier: %w", err)
		}
		a.Verifier = v
	} else {
		log.Warn("CLERK_SECRET_KEY is not set: session tokens are refused; only admin keys authenticate")
	}
	return a, nil
}

// RemoteResolver resolves principals through the team service, cached
// briefly so that a request does not cost a call to it. (The team service
// itself resolves from its own tables, uncached: a role change applies to
// its own methods at once.)
func RemoteResolver(conn grpc.ClientConnInterface) auth.Resolver {
	return auth.NewCachingResolver(teamclient.Resolver{Client: teamv1.NewTeamServiceClient(conn)}, auth.CacheOptions{})
}

// ServeOption adjusts Serve.
type ServeOption func(*serveOptions)

type serveOptions struct {
	metrics    []func(prometheus.Registerer) error
	background []func(context.Context)
}

// WithBackground runs f beside the server (a sweep, a reconciler): from
// before the server listens until it has stopped, on a context cancelled
// then. Serve returns once every f has returned.
func WithBackground(f func(ctx context.Context)) ServeOption {
	return func(o *serveOptions) { o.background = append(o.background, f) }
}

// WithRelay runs an outbox relay in the background and serves its metrics.
func WithRelay(r *outbox.Relay, log *slog.Logger) ServeOption {
	return func(o *serveOptions) {
		WithMetrics(r.Register)(o)
		WithBackground(func(ctx context.Context) {
			if err := r.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("outbox relay stopped", "topics", r.Topics, "error", err)
			}
		})(o)
	}
}

// WithMetrics registers a service's own collectors (outbox relays, sync
// state, ...) on the registry that the metrics endpoint serves.
func WithMetrics(register func(prometheus.Registerer) error) ServeOption {
	return func(o *serveOptions) { o.metrics = append(o.metrics, register) }
}

// Serve runs a gRPC server for service c with the platform's interceptor
// chain until ctx is cancelled. register adds the service's implementation.
func Serve(ctx context.Context, c Common, log *slog.Logger, authn *auth.Authenticator, register func(*grpc.Server), opts ...ServeOption) error {
	var o serveOptions
	for _, opt := range opts {
		opt(&o)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, m := range o.metrics {
		if err := m(reg); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	srv := grpcserver.New(grpcserver.Options{Name: c.Name, Log: log, Auth: authn, Registerer: reg})
	register(srv.GRPC())

	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, f := range o.background {
		wg.Go(func() { f(bg) })
	}
	defer wg.Wait()
	defer stop()
	return srv.Run(ctx, c.GRPCAddr, c.MetricsAddr)
}
