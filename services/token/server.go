// Package token is the token service: API tokens, routes and route backend
// credentials, and the sync of all three to Cloudflare Workers KV.
//
// Foundation slice: the schema (outbox) and an authenticated server whose
// RPCs answer Unimplemented until the token service issue builds them.
package token

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
)

// Server is the TokenService gRPC server.
type Server struct {
	tokenv1.UnimplementedTokenServiceServer
}

// Run runs the token service until ctx is cancelled.
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
	authn, err := app.Authenticator(cfg.Common, log, app.RemoteResolver(teamConn))
	if err != nil {
		return err
	}
	return app.Serve(ctx, cfg.Common, log, authn, func(s *grpc.Server) {
		tokenv1.RegisterTokenServiceServer(s, &Server{})
	})
}
