// Package audit is the audit service: the append-only, hash-chained audit trail of every change and reveal.
//
// Foundation slice: an authenticated server whose RPCs answer Unimplemented
// until the audit service issue builds them.
package audit

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
)

// Config is the audit service's configuration.
type Config struct {
	app.Common
}

// LoadConfig reads the audit service's configuration.
func LoadConfig(l *config.Loader) Config {
	return Config{Common: app.LoadCommon(l, app.Audit, true)}
}

// Server is the AuditService gRPC server.
type Server struct {
	auditv1.UnimplementedAuditServiceServer
}

// Run runs the audit service until ctx is cancelled.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	pool, err := app.OpenDB(ctx, cfg.Common)
	if err != nil {
		return err
	}
	defer pool.Close()
	teamConn, err := app.Dial(ctx, cfg.Common, log, cfg.Addrs.Team)
	if err != nil {
		return err
	}
	defer teamConn.Close()
	authn, err := app.Authenticator(cfg.Common, log, app.RemoteResolver(teamConn))
	if err != nil {
		return err
	}
	return app.Serve(ctx, cfg.Common, log, authn, func(s *grpc.Server) {
		auditv1.RegisterAuditServiceServer(s, &Server{})
	})
}
