package health

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"

	healthv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/health/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/backoff"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
)

// Config is the health service's configuration. DATABASE_URL is optional:
// without it the database check reports "skipped".
type Config struct {
	app.Common
	Cloudflare app.CloudflareConfig
}

// LoadConfig reads the health service's configuration.
func LoadConfig(l *config.Loader) Config {
	return Config{Common: app.LoadCommon(l, app.Health, false), Cloudflare: app.LoadCloudflare(l)}
}

// Run runs the health service until ctx is cancelled. It starts even when
// PostgreSQL is down (reporting it is its job) and connects once it is up.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	var pool atomic.Pointer[pgxpool.Pool]
	if url := cfg.DatabaseURL.Reveal(); url != "" {
		go connectLoop(ctx, url, &pool, log)
		defer func() {
			if p := pool.Load(); p != nil {
				p.Close()
			}
		}()
	}
	hc := &http.Client{Timeout: checkTimeout}
	checks := map[string]Check{
		"clerk": ClerkCheck(cfg.Clerk, hc),
		"database": func(ctx context.Context) Result {
			if cfg.DatabaseURL.Reveal() == "" {
				return DatabaseCheck(nil)(ctx)
			}
			p := pool.Load()
			if p == nil {
				return Result{Status: StatusUnhealthy, Message: "Database connection failed: cannot connect"}
			}
			return DatabaseCheck(p)(ctx)
		},
		"health_service": func(context.Context) Result { return Result{Status: StatusHealthy, Message: "serving"} },
	}
	conns := map[string]*grpc.ClientConn{}
	for name, addr := range map[string]string{
		app.Token: cfg.Addrs.Token, app.Team: cfg.Addrs.Team, app.Audit: cfg.Addrs.Audit, app.Usage: cfg.Addrs.Usage,
	} {
		conn, err := app.Dial(ctx, cfg.Common, log, addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		conns[name] = conn
		checks[name+"_service"] = ServiceCheck(conn)
	}
	// The KV check includes the token service's sync state, asked over the
	// same (service-credentialed) connection as its liveness.
	checks["cloudflare_kv"] = WithSyncStatus(CloudflareCheck(cfg.Cloudflare, hc), tokenv1.NewTokenServiceClient(conns[app.Token]), time.Now)
	authn, err := app.Authenticator(cfg.Common, log, app.RemoteResolver(conns[app.Team]))
	if err != nil {
		return err
	}
	return app.Serve(ctx, cfg.Common, log, authn, func(s *grpc.Server) {
		healthv1.RegisterHealthServiceServer(s, NewServer(checks))
	})
}

// connectLoop connects to PostgreSQL, retrying with backoff until it works
// or ctx ends.
func connectLoop(ctx context.Context, url string, dst *atomic.Pointer[pgxpool.Pool], log *slog.Logger) {
	retry := backoff.Policy{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	for attempt := 1; ; attempt++ {
		p, err := db.Connect(ctx, url, db.WithApplicationName("tm-health"), db.WithMaxConns(2))
		if err == nil {
			dst.Store(p)
			return
		}
		log.Warn("database not reachable yet", "error", err, "attempt", attempt)
		if !retry.Wait(ctx, attempt) {
			return
		}
	}
}
