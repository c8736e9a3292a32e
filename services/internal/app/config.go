package app

import (
	"log/slog"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
	"github.com/tokenmanager/tokenmanager/services/internal/logging"
)

// Service names, as used in logs, metrics, service credentials and the
// detailed health report.
const (
	Token  = "token"
	Team   = "team"
	Audit  = "audit"
	Usage  = "usage"
	Health = "health"
)

// Ports are the default listen ports of each service: gRPC and metrics.
var Ports = map[string]struct{ GRPC, Metrics string }{
	Token:  {"9101", "9201"},
	Team:   {"9102", "9202"},
	Audit:  {"9103", "9203"},
	Usage:  {"9104", "9204"},
	Health: {"9105", "9205"},
}

// Addrs are where the services listen, for the ones that call each other.
type Addrs struct {
	Token, Team, Audit, Usage, Health string
}

// Common is the configuration every service binary shares.
type Common struct {
	Name          string
	DatabaseURL   config.Secret // DATABASE_URL: carries a password
	GRPCAddr      string        // TM_GRPC_ADDR
	MetricsAddr   string        // TM_METRICS_ADDR
	LogLevel      slog.Level    // TM_LOG_LEVEL
	ServiceSecret config.Secret // TM_SERVICE_SECRET: signs service-to-service credentials
	Clerk         ClerkConfig
	Addrs         Addrs
}

// ClerkConfig is how services reach Clerk.
type ClerkConfig struct {
	SecretKey      config.Secret // CLERK_SECRET_KEY
	APIURL         string        // CLERK_API_URL
	AllowedOrigins []string      // ALLOWED_FRONTEND_ORIGINS: allowed `azp` of session tokens
}

// DefaultAllowedOrigins are v2.7's defaults for ALLOWED_FRONTEND_ORIGINS.
var DefaultAllowedOrigins = []string{"http://localhost:5173", "https://token.blocktempo.ai"}

// LoadCommon reads the shared variables for service name. needDB makes
// DATABASE_URL required.
func LoadCommon(l *config.Loader, name string, needDB bool) Common {
	p := Ports[name]
	return Common{
		Name:          name,
		DatabaseURL:   l.SecretURL("DATABASE_URL", needDB, "postgres", "postgresql"),
		GRPCAddr:      l.HostPort("TM_GRPC_ADDR", "127.0.0.1:"+p.GRPC),
		MetricsAddr:   l.HostPort("TM_METRICS_ADDR", "127.0.0.1:"+p.Metrics),
		LogLevel:      config.Parse(l, "TM_LOG_LEVEL", slog.LevelInfo, logging.ParseLevel),
		ServiceSecret: l.RequiredSecret("TM_SERVICE_SECRET", 32),
		Clerk: ClerkConfig{
			SecretKey:      l.Secret("CLERK_SECRET_KEY"),
			APIURL:         l.URL("CLERK_API_URL", auth.DefaultClerkAPIURL, "https", "http"),
			AllowedOrigins: l.List("ALLOWED_FRONTEND_ORIGINS", DefaultAllowedOrigins),
		},
		Addrs: Addrs{
			Token:  l.HostPort("TM_TOKEN_ADDR", "127.0.0.1:"+Ports[Token].GRPC),
			Team:   l.HostPort("TM_TEAM_ADDR", "127.0.0.1:"+Ports[Team].GRPC),
			Audit:  l.HostPort("TM_AUDIT_ADDR", "127.0.0.1:"+Ports[Audit].GRPC),
			Usage:  l.HostPort("TM_USAGE_ADDR", "127.0.0.1:"+Ports[Usage].GRPC),
			Health: l.HostPort("TM_HEALTH_ADDR", "127.0.0.1:"+Ports[Health].GRPC),
		},
	}
}

// CloudflareConfig is how the token and health services reach Workers KV.
type CloudflareConfig struct {
	AccountID   string        // CF_ACCOUNT_ID
	APIToken    config.Secret // CF_API_TOKEN
	NamespaceID string        // CF_KV_NAMESPACE_ID
	BaseURL     string        // CF_API_BASE_URL
}

// DefaultCloudflareBaseURL is Cloudflare's API, with the /client/v4 prefix
// that cloudflare-go expects in its base URL.
const DefaultCloudflareBaseURL = "https://api.cloudflare.com/client/v4"

// LoadCloudflare reads the CF_* variables. All three of account, token and
// namespace, or none: v2.7's "dummy" placeholders count as none.
func LoadCloudflare(l *config.Loader) CloudflareConfig {
	c := CloudflareConfig{
		AccountID:   l.String("CF_ACCOUNT_ID", ""),
		APIToken:    l.Secret("CF_API_TOKEN"),
		NamespaceID: l.String("CF_KV_NAMESPACE_ID", ""),
		BaseURL:     l.URL("CF_API_BASE_URL", DefaultCloudflareBaseURL, "https", "http"),
	}
	if c.AccountID == "dummy" || c.APIToken.Reveal() == "dummy" {
		c.AccountID, c.APIToken, c.NamespaceID = "", "", ""
	}
	set := 0
	for _, v := range []string{c.AccountID, c.APIToken.Reveal(), c.NamespaceID} {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		l.Problem("CF_ACCOUNT_ID", "set CF_ACCOUNT_ID, CF_API_TOKEN and CF_KV_NAMESPACE_ID together, or none of them")
	}
	return c
}

// Configured reports whether Cloudflare credentials were given.
func (c CloudflareConfig) Configured() bool { return c.AccountID != "" }
