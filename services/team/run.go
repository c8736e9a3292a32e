package team

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
)

// Run runs the team service until ctx is cancelled: the gRPC server, and
// two outbox relays — audit events to the audit service, role mirrors to
// Clerk — that drain what the server's transactions enqueue.
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
	tokenConn, err := app.Dial(ctx, cfg.Common, log, cfg.Addrs.Token)
	if err != nil {
		return err
	}
	defer tokenConn.Close()
	auditConn, err := app.Dial(ctx, cfg.Common, log, cfg.Addrs.Audit)
	if err != nil {
		return err
	}
	defer auditConn.Close()

	dir := NewDirectory(cfg.Clerk.APIURL, cfg.Clerk.SecretKey.Reveal())
	srv := NewServer(pool, Options{
		Directory:             dir,
		Tokens:                TokenServiceTeams{Client: tokenv1.NewTokenServiceClient(tokenConn)},
		Log:                   log,
		UserTTL:               cfg.UserCacheTTL,
		InvitationRedirectURL: cfg.InvitationRedirectURL,
	})
	// The team service reads roles from its own tables (a few indexed
	// queries), uncached, unlike app.RemoteResolver: a role change or key
	// revocation applies to its own methods at once — the creator of a team
	// can manage it on the next request.
	authn, err := app.Authenticator(cfg.Common, log, srv.Resolver())
	if err != nil {
		return err
	}

	relays := []app.ServeOption{
		app.WithRelay(&outbox.Relay{Pool: pool, Schema: schema, Topics: []string{auditlog.Topic},
			Handler: auditlog.Deliver(auditv1.NewAuditServiceClient(auditConn)), Logger: log}, log),
		app.WithRelay(&outbox.Relay{Pool: pool, Schema: schema, Topics: []string{TopicClerkRoles},
			Handler: MirrorRoles(pool, dir, log), Logger: log}, log),
	}
	return app.Serve(ctx, cfg.Common, log, authn, func(s *grpc.Server) {
		teamv1.RegisterTeamServiceServer(s, srv)
	}, relays...)
}
