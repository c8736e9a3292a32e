// Package usage is the usage service: ingest of every edge request and the analytics and dashboard built on them.
//
// Foundation slice: an authenticated server whose RPCs answer Unimplemented
// until the usage service issue builds them.
package usage

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
)

// Config is the usage service's configuration.
type Config struct {
	app.Common
}

// LoadConfig reads the usage service's configuration.
func LoadConfig(l *config.Loader) Config {
	return Config{Common: app.LoadCommon(l, app.Usage, true)}
}

// Server is the UsageService gRPC server.
type Server struct {
	usagev1.UnimplementedUsageServiceServer
}

// Run runs the usage service until ctx is cancelled.
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
		usagev1.RegisterUsageServiceServer(s, &Server{})
	})
}
