package usage

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

// queries is the usage service's SQL (package store).
var queries = store.New()

// Service is the usage service's use cases, one part per concern, each
// owning only its state: ingest (ingest.go), the analytics reads
// (analytics.go, analytics_drilldown.go) over the name cache (names.go),
// and the dashboard overview's fan-out (overview.go).
type Service struct {
	ingest    *ingest
	analytics *analytics
	dashboard *dashboard
}

// ServiceDeps are what a Service needs.
type ServiceDeps struct {
	Pool      *pgxpool.Pool
	Log       *slog.Logger
	Ingest    IngestConfig
	Ingester  *Ingester
	Token     tokenv1.TokenServiceClient
	Team      teamv1.TeamServiceClient
	Audit     auditv1.AuditServiceClient
	Retention time.Duration
	Now       func() time.Time
}

// NewService builds the use cases.
func NewService(d ServiceDeps) *Service {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		ingest:    newIngest(d.Ingest, d.Ingester, newTokenCache(d.Token), d.Retention, d.Now),
		analytics: &analytics{db: d.Pool, token: d.Token, names: newNames(d.Token, d.Log, d.Now), now: d.Now},
		dashboard: &dashboard{db: d.Pool, token: d.Token, team: d.Team, audit: d.Audit, log: d.Log},
	}
}

// Ingest is POST /api/usage-log.
func (s *Service) Ingest(ctx context.Context, body []byte, sig, ts string) (accepted, duplicates int, err error) {
	return s.ingest.Ingest(ctx, body, sig, ts)
}

// Stats is GET /api/usage/stats.
func (s *Service) Stats(ctx context.Context) (*Stats, error) {
	return s.analytics.Stats(ctx)
}

// TokenUsage is GET /api/usage/token/{id}; limit nil is the default.
func (s *Service) TokenUsage(ctx context.Context, tokenID int64, limit *int32) (*TokenUsage, error) {
	return s.analytics.TokenUsage(ctx, tokenID, limit)
}

// RouteUsage is GET /api/usage/route[?route_path=]; limit nil is the default.
func (s *Service) RouteUsage(ctx context.Context, path string, limit *int32) (*RouteUsage, error) {
	return s.analytics.RouteUsage(ctx, path, limit)
}

// Overview is GET /api/dashboard/overview.
func (s *Service) Overview(ctx context.Context) (*Overview, error) {
	return s.dashboard.Overview(ctx)
}
