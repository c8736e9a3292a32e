// Package usage is the usage service: ingest of every edge request and the
// analytics and dashboard built on them.
//
// Ingest (POST /api/usage-log, via the gateway's raw handler) verifies the
// Worker's HMAC signature, decodes one event or a batch, checks every token
// hash with the token service, and hands the events to the Ingester: one
// writer goroutine that commits the events of many concurrent requests in a
// single transaction — insert … on conflict (event_id, used_at) do nothing
// into usage.events (partitioned by day) plus the hourly and daily rollups
// of exactly the rows inserted — and answers each request once its events
// are committed. A 2xx therefore means stored; a retry of the same events is
// counted as duplicates, never stored twice.
//
// The analytics read the rollups for every total, series and percentile,
// and raw events only for the newest-N lists, by index. Everything is scoped
// to the caller's teams (authz.ReadScope).
package usage

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
)

// Server is the UsageService gRPC server: thin handlers over Service that
// convert requests to arguments and domain results to responses
// (convert.go). Errors become statuses in the interceptor chain.
type Server struct {
	usagev1.UnimplementedUsageServiceServer
	svc *Service
}

// NewServer returns the gRPC server of svc.
func NewServer(svc *Service) *Server { return &Server{svc: svc} }

// Ingest is public (no credential): the signature is the authentication.
func (s *Server) Ingest(ctx context.Context, req *usagev1.IngestRequest) (*usagev1.IngestResponse, error) {
	accepted, dups, err := s.svc.Ingest(ctx, req.GetBody(), req.GetSignature(), req.GetSignatureTimestamp())
	if err != nil {
		return nil, err
	}
	return &usagev1.IngestResponse{Status: "logged", Accepted: int32(accepted), Duplicates: int32(dups)}, nil
}

// GetUsageStats is GET /api/usage/stats.
func (s *Server) GetUsageStats(ctx context.Context, _ *usagev1.GetUsageStatsRequest) (*usagev1.GetUsageStatsResponse, error) {
	st, err := s.svc.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return statsProto(st), nil
}

// GetTokenUsage is GET /api/usage/token/{token_id}.
func (s *Server) GetTokenUsage(ctx context.Context, req *usagev1.GetTokenUsageRequest) (*usagev1.GetTokenUsageResponse, error) {
	u, err := s.svc.TokenUsage(ctx, req.GetTokenId(), limitArg(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	return tokenUsageProto(u), nil
}

// GetRouteUsage is GET /api/usage/route.
func (s *Server) GetRouteUsage(ctx context.Context, req *usagev1.GetRouteUsageRequest) (*usagev1.GetRouteUsageResponse, error) {
	u, err := s.svc.RouteUsage(ctx, req.GetRoutePath(), limitArg(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	return routeUsageProto(u), nil
}

// limitArg is an optional limit: nil when the request has none.
func limitArg(v *wrapperspb.Int32Value) *int32 {
	if v == nil {
		return nil
	}
	n := v.GetValue()
	return &n
}

// GetDashboardOverview is GET /api/dashboard/overview.
func (s *Server) GetDashboardOverview(ctx context.Context, _ *usagev1.GetDashboardOverviewRequest) (*usagev1.GetDashboardOverviewResponse, error) {
	o, err := s.svc.Overview(ctx)
	if err != nil {
		return nil, err
	}
	return overviewProto(o), nil
}

// Run runs the usage service until ctx is cancelled. Shutdown order: the
// gRPC server drains (in-flight ingests wait for their commit), then the
// Ingester commits whatever is left, then last_used is flushed.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	pool, err := app.OpenDB(ctx, cfg.Common, Migrations)
	if err != nil {
		return err
	}
	defer pool.Close()
	conns := map[string]*grpc.ClientConn{}
	for name, addr := range map[string]string{"team": cfg.Addrs.Team, "token": cfg.Addrs.Token, "audit": cfg.Addrs.Audit} {
		c, err := app.Dial(ctx, cfg.Common, log, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		conns[name] = c
	}
	authn, err := app.Authenticator(cfg.Common, log, app.RemoteResolver(conns["team"]))
	if err != nil {
		return err
	}
	if cfg.Ingest.Secret.Reveal() == "" {
		if cfg.Ingest.AllowUnsigned {
			log.Warn("USAGE_INGEST_SECRET is not set: only unsigned usage posts (for existing tokens) are accepted")
		} else {
			log.Warn("USAGE_INGEST_SECRET is not set and USAGE_ALLOW_UNSIGNED is false: every usage post is refused")
		}
	}
	tokenClient := tokenv1.NewTokenServiceClient(conns["token"])
	lu := newLastUsed(tokenClient, cfg.LastUsedInterval, log)
	ing := NewIngester(pool, log, IngesterOptions{OnCommit: lu.note})
	retention := time.Duration(cfg.RetentionDays) * 24 * time.Hour
	maint := &maintainer{pool: pool, log: log, retention: retention, ahead: cfg.PartitionsAhead, ingester: ing, now: time.Now}
	if err := maint.once(ctx); err != nil {
		ing.Close()
		return err
	}
	svc := NewService(ServiceDeps{
		Pool: pool, Log: log, Ingest: cfg.Ingest, Ingester: ing, Token: tokenClient,
		Team: teamv1.NewTeamServiceClient(conns["team"]), Audit: auditv1.NewAuditServiceClient(conns["audit"]),
		Retention: retention,
	})

	bgCtx, stopBG := context.WithCancel(context.Background())
	luDone := make(chan struct{})
	go func() { lu.run(bgCtx); close(luDone) }()
	maintDone := make(chan struct{})
	go func() { maint.loop(bgCtx); close(maintDone) }()

	err = app.Serve(ctx, cfg.Common, log, authn, func(s *grpc.Server) {
		usagev1.RegisterUsageServiceServer(s, NewServer(svc))
	})
	ing.Close() // commits what is queued; its OnCommit feeds lu
	stopBG()    // lu flushes once more on its way out
	<-luDone
	<-maintDone
	return err
}
