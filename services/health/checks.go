package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	cloudflare "github.com/cloudflare/cloudflare-go"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
)

// Check statuses, as the contract spells them.
const (
	StatusHealthy   = "healthy"
	StatusWarning   = "warning"
	StatusUnhealthy = "unhealthy"
	StatusSkipped   = "skipped"
)

// Result is the outcome of one check.
type Result struct {
	Status  string
	Message string
	Latency time.Duration
	Details map[string]string
}

// A Check probes one dependency. It must return within ctx's deadline and
// never put a secret or an internal address into its message.
type Check func(ctx context.Context) Result

// DatabaseCheck runs SELECT 1. A nil pool means DATABASE_URL is not set.
func DatabaseCheck(pool *pgxpool.Pool) Check {
	return func(ctx context.Context) Result {
		if pool == nil {
			return Result{Status: StatusSkipped, Message: "DATABASE_URL is not set for the health service"}
		}
		var one int
		if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			// pgx errors can hold host names; say what failed, not where.
			return Result{Status: StatusUnhealthy, Message: "Database connection failed: " + dbReason(ctx, err)}
		}
		return Result{Status: StatusHealthy, Message: "Database connection successful"}
	}
}

func dbReason(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return "timed out"
	}
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) {
		return "SQLSTATE " + pgErr.SQLState()
	}
	return "cannot connect"
}

// CloudflareCheck lists one page of the KV namespace with cloudflare-go, so
// a wrong token, account or namespace shows here rather than as lost syncs.
// (v2.7 counted any HTTP answer as healthy.)
func CloudflareCheck(cfg app.CloudflareConfig, hc *http.Client) Check {
	return func(ctx context.Context) Result {
		if !cfg.Configured() {
			return Result{Status: StatusSkipped, Message: "Cloudflare KV is not configured (CF_ACCOUNT_ID, CF_API_TOKEN, CF_KV_NAMESPACE_ID)"}
		}
		api, err := cloudflare.NewWithAPIToken(cfg.APIToken.Reveal(),
			cloudflare.BaseURL(cfg.BaseURL),
			cloudflare.HTTPClient(hc),
			cloudflare.UsingRetryPolicy(0, 0, 0))
		if err != nil {
			return Result{Status: StatusUnhealthy, Message: "Cloudflare KV check failed: invalid client configuration"}
		}
		_, err = api.ListWorkersKVKeys(ctx, cloudflare.AccountIdentifier(cfg.AccountID), cloudflare.ListWorkersKVsParams{NamespaceID: cfg.NamespaceID, Limit: 10})
		if err != nil {
			return Result{Status: StatusUnhealthy, Message: "Cloudflare KV check failed: " + cloudflareReason(ctx, err)}
		}
		return Result{Status: StatusHealthy, Message: "Cloudflare KV connection successful"}
	}
}

func cloudflareReason(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return "timed out"
	}
	var cfErr *cloudflare.Error
	if errors.As(err, &cfErr) {
		return fmt.Sprintf("HTTP %d", cfErr.StatusCode)
	}
	var cfErrV cloudflare.Error
	if errors.As(err, &cfErrV) {
		return fmt.Sprintf("HTTP %d", cfErrV.StatusCode)
	}
	return "cannot reach the API"
}

// ClerkCheck fetches the instance's JWKS with the secret key: it proves the
// API is reachable, the key is valid, and session tokens can be verified.
func ClerkCheck(cfg app.ClerkConfig, hc *http.Client) Check {
	return func(ctx context.Context) Result {
		if cfg.SecretKey.Reveal() == "" {
			return Result{Status: StatusSkipped, Message: "Clerk is not configured (CLERK_SECRET_KEY)"}
		}
		client := jwks.NewClient(&clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
			URL:        clerk.String(cfg.APIURL),
			Key:        clerk.String(cfg.SecretKey.Reveal()),
			HTTPClient: hc,
		}})
		set, err := client.Get(ctx, &jwks.GetParams{})
		if err != nil {
			return Result{Status: StatusUnhealthy, Message: "Clerk API check failed: " + clerkReason(ctx, err)}
		}
		if len(set.Keys) == 0 {
			return Result{Status: StatusWarning, Message: "Clerk API reachable, but it serves no signing keys"}
		}
		return Result{Status: StatusHealthy, Message: "Clerk API connection successful"}
	}
}

func clerkReason(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return "timed out"
	}
	var apiErr *clerk.APIErrorResponse
	if errors.As(err, &apiErr) {
		return fmt.Sprintf("HTTP %d", apiErr.HTTPStatusCode)
	}
	return "cannot reach the API"
}

// ServiceCheck asks a service's grpc.health.v1 whether it is serving.
func ServiceCheck(conn grpc.ClientConnInterface) Check {
	client := healthpb.NewHealthClient(conn)
	return func(ctx context.Context) Result {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			msg := "not reachable"
			if ctx.Err() != nil {
				msg = "timed out"
			} else if st, ok := status.FromError(err); ok && st.Code().String() != "Unavailable" {
				msg = "health check failed: " + st.Code().String()
			}
			return Result{Status: StatusUnhealthy, Message: msg}
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return Result{Status: StatusUnhealthy, Message: "status " + resp.GetStatus().String()}
		}
		return Result{Status: StatusHealthy, Message: "serving"}
	}
}
