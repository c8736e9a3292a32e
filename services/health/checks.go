package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	cloudflare "github.com/cloudflare/cloudflare-go"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
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

// DatabaseCheck pings PostgreSQL over a pooled connection. A nil pool means
// DATABASE_URL is not set.
func DatabaseCheck(pool *pgxpool.Pool) Check {
	return func(ctx context.Context) Result {
		if pool == nil {
			return Result{Status: StatusSkipped, Message: "DATABASE_URL is not set for the health service"}
		}
		if err := pool.Ping(ctx); err != nil {
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

// KV sync thresholds of the cloudflare_kv check.
const (
	// maxPendingAge: a KV change waiting longer than this (revocations
	// included) means the sync is stuck or far behind.
	maxPendingAge = 60 * time.Second
	// defaultReconcileInterval stands in for the token service's reconcile
	// period when GetSyncStatus does not report it (an older token
	// service): the reconcile is late after twice the period.
	defaultReconcileInterval = 15 * time.Minute
	maxLastErrorLen          = 200
)

// WithSyncStatus extends the Cloudflare KV check (kv) with the token
// service's sync state from TokenService.GetSyncStatus: Cloudflare can be
// reachable while revocations pile up in the outbox. The state goes into
// the result's details (outbox_depth, oldest_pending_age_s,
// delivery_failures, last_reconcile_at, last_reconcile_drift, last_error),
// and the check is at least "warning" when the oldest pending change is
// older than 60 s, the last reconcile is older than twice its interval,
// the sync is failing (the last delivery round failed), the token service
// has sync disabled, or its state cannot be read. A skipped kv check stays
// skipped: there is nothing to sync to.
func WithSyncStatus(kv Check, tokens tokenv1.TokenServiceClient, now func() time.Time) Check {
	return func(ctx context.Context) Result {
		type answer struct {
			st  *tokenv1.GetSyncStatusResponse
			err error
		}
		ch := make(chan answer, 1)
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			st, err := tokens.GetSyncStatus(sctx, &tokenv1.GetSyncStatusRequest{})
			ch <- answer{st, err}
		}()
		r := kv(ctx)
		if r.Status == StatusSkipped {
			return r
		}
		a := <-ch
		if r.Details == nil {
			r.Details = map[string]string{}
		}
		if a.err != nil {
			reason := "not reachable"
			if ctx.Err() != nil {
				reason = "timed out"
			} else if st, ok := status.FromError(a.err); ok && st.Code() != codes.Unavailable {
				reason = st.Code().String()
			}
			r.Details["sync_status"] = "unavailable"
			return degrade(r, "KV sync state unknown: token service "+reason)
		}
		for k, v := range syncDetails(a.st) {
			r.Details[k] = v
		}
		for _, reason := range syncProblems(a.st, now()) {
			r = degrade(r, reason)
		}
		return r
	}
}

func syncDetails(st *tokenv1.GetSyncStatusResponse) map[string]string {
	d := map[string]string{
		"outbox_depth":         strconv.FormatInt(st.GetOutboxDepth(), 10),
		"oldest_pending_age_s": strconv.FormatInt(int64(st.GetOldestPendingAge().AsDuration().Seconds()), 10),
		"delivery_failures":    strconv.FormatInt(st.GetDeliveryFailures(), 10),
		"last_reconcile_at":    "",
		"last_reconcile_drift": strconv.FormatInt(st.GetLastReconcileDrift(), 10),
		"last_error":           clip(st.GetLastError(), maxLastErrorLen),
	}
	if st.GetLastReconcileAt() != nil {
		d["last_reconcile_at"] = st.GetLastReconcileAt().AsTime().UTC().Format(time.RFC3339)
	}
	return d
}

// syncProblems lists why a sync state is not healthy.
func syncProblems(st *tokenv1.GetSyncStatusResponse, now time.Time) []string {
	if !st.GetKvConfigured() {
		return []string{"the token service has KV sync disabled (Cloudflare is not configured for it)"}
	}
	var out []string
	if age := st.GetOldestPendingAge().AsDuration(); st.GetOutboxDepth() > 0 && age > maxPendingAge {
		out = append(out, fmt.Sprintf("%d KV changes pending, the oldest for %ds", st.GetOutboxDepth(), int64(age.Seconds())))
	}
	// Never reconciled yet is not late: the reconciler runs at start-up, and
	// a failing one shows through the failures below.
	every := defaultReconcileInterval
	if d := st.GetReconcileInterval(); d != nil && d.AsDuration() > 0 {
		every = d.AsDuration()
	}
	if at := st.GetLastReconcileAt(); at != nil && now.Sub(at.AsTime()) > 2*every {
		out = append(out, fmt.Sprintf("last reconcile %s ago", now.Sub(at.AsTime()).Truncate(time.Second)))
	}
	if st.GetDeliveryFailures() > 0 && st.GetLastError() != "" {
		out = append(out, "KV sync failing")
	}
	return out
}

// degrade lowers a healthy result to a warning and adds reason to its message.
func degrade(r Result, reason string) Result {
	if r.Status == StatusHealthy {
		r.Status = StatusWarning
	}
	if r.Message == "" {
		r.Message = reason
	} else {
		r.Message += "; " + reason
	}
	return r
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
