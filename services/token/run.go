package token

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
	"github.com/tokenmanager/tokenmanager/services/token/kvsync"
)

// NewSyncer builds the KV syncer of the token schema.
func NewSyncer(svc *Service, client *kvsync.Client, log *slog.Logger) *kvsync.Syncer {
	return &kvsync.Syncer{Pool: svc.Pool, Schema: schema, Topic: KVTopic, Source: KVSource{Ring: svc.Ring}, Client: client,
		Fingerprint: svc.Ring.Fingerprint, Log: log, RoutesKey: routesKey, RoutesInterval: time.Second}
}

// NewKVRelay is the outbox relay of the KV topic.
func NewKVRelay(svc *Service, sync *kvsync.Syncer, log *slog.Logger, maxBackoff time.Duration) *outbox.Relay {
	return &outbox.Relay{Pool: svc.Pool, Schema: schema, Topics: []string{KVTopic}, Handler: sync.Handle, Logger: log,
		MinBackoff: 200 * time.Millisecond, MaxBackoff: maxBackoff, PollInterval: time.Second}
}

// Run runs the token service until ctx is cancelled.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	pool, err := app.OpenDB(ctx, cfg.Common, Migrations)
	if err != nil {
		return err
	}
	defer pool.Close()
	ring, err := cfg.Ring()
	if err != nil {
		return err
	}
	teamConn, err := app.Dial(ctx, cfg.Common, log, cfg.Addrs.Team)
	if err != nil {
		return err
	}
	defer teamConn.Close()
	auditConn, err := app.Dial(ctx, cfg.Common, log, cfg.Addrs.Audit)
	if err != nil {
		return err
	}
	defer auditConn.Close()
	authn, err := app.Authenticator(cfg.Common, log, app.RemoteResolver(teamConn))
	if err != nil {
		return err
	}

	svc := &Service{Pool: pool, Ring: ring, Teams: TeamClient{Client: teamv1.NewTeamServiceClient(teamConn)}}

	opts := []app.ServeOption{
		app.WithRelay(&outbox.Relay{Pool: pool, Schema: schema, Topics: []string{auditlog.Topic}, Logger: log,
			Handler: auditlog.Deliver(auditv1.NewAuditServiceClient(auditConn))}, log),
		app.WithBackground(func(ctx context.Context) { runSweep(ctx, svc, log, cfg.ExpirySweepInterval) }),
	}
	var syncer *kvsync.Syncer
	if cfg.Cloudflare.Configured() {
		client, err := kvsync.NewClient(kvsync.Config{AccountID: cfg.Cloudflare.AccountID, APIToken: cfg.Cloudflare.APIToken.Reveal(),
			NamespaceID: cfg.Cloudflare.NamespaceID, BaseURL: cfg.Cloudflare.BaseURL, RateLimit: float64(cfg.KVRateLimit)})
		if err != nil {
			return err
		}
		syncer = NewSyncer(svc, client, log)
		opts = append(opts, app.WithMetrics(syncer.Register),
			app.WithRelay(NewKVRelay(svc, syncer, log, cfg.KVMaxBackoff), log),
			app.WithBackground(func(ctx context.Context) { syncer.RunReconciler(ctx, cfg.KVReconcileInterval) }))
		log.Info("KV sync enabled", "base_url", cfg.Cloudflare.BaseURL, "reconcile_interval", cfg.KVReconcileInterval)
	} else {
		// Changes still queue in the outbox; they are delivered once
		// Cloudflare is configured and the service restarts.
		log.Warn("Cloudflare KV is not configured (CF_ACCOUNT_ID, CF_API_TOKEN, CF_KV_NAMESPACE_ID): KV sync disabled")
	}

	return app.Serve(ctx, cfg.Common, log, authn, func(s *grpc.Server) {
		tokenv1.RegisterTokenServiceServer(s, NewServer(svc, syncer))
	}, opts...)
}

// runSweep removes expired tokens and ended grace periods from KV.
func runSweep(ctx context.Context, svc *Service, log *slog.Logger, every time.Duration) {
	for {
		if n, err := svc.SweepExpired(ctx); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "expiry sweep failed", "err", err)
		} else if n > 0 {
			log.InfoContext(ctx, "expiry sweep: KV removals enqueued", "secrets", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
