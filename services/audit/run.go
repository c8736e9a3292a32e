package audit

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
)

// Run runs the audit service until ctx is cancelled.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	pool, err := app.OpenDB(ctx, cfg.Common, Migrations)
	if err != nil {
		return err
	}
	defer pool.Close()
	teamConn, err := app.Dial(ctx, cfg.Common, log, cfg.Addrs.Team)
	if err != nil {
		return err
	}
	defer teamConn.Close()
	tokenConn, err := app.Dial(ctx, cfg.Common, log, cfg.Addrs.Token)
	if err != nil {
		return err
	}
	defer tokenConn.Close()
	authn, err := app.Authenticator(cfg.Common, log, app.RemoteResolver(teamConn))
	if err != nil {
		return err
	}
	svc := NewService(NewStore(pool), tokenv1.NewTokenServiceClient(tokenConn), log)
	return app.Serve(ctx, cfg.Common, log, authn, func(s *grpc.Server) {
		auditv1.RegisterAuditServiceServer(s, NewServer(svc))
	})
}
