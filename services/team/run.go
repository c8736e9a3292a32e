package team

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
)

// Run runs the team service until ctx is cancelled.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	pool, err := app.OpenDB(ctx, cfg.Common, Migrations)
	if err != nil {
		return err
	}
	defer pool.Close()
	if key := cfg.BootstrapAdminKey.Reveal(); key != "" {
		if err := EnsureBootstrapKey(ctx, pool, key); err != nil {
			return err
		}
		log.Info("bootstrap admin key is live", "prefix", key[:keyPrefixLen])
	}
	srv := NewServer(pool)
	authn, err := app.Authenticator(cfg.Common, log, srv.Resolver())
	if err != nil {
		return err
	}
	return app.Serve(ctx, cfg.Common, log, authn, func(s *grpc.Server) {
		teamv1.RegisterTeamServiceServer(s, srv)
	})
}
