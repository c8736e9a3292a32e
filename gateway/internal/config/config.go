// Package config is the gateway's configuration, read from environment
// variables and validated with every problem reported at once. (The gateway
// is its own module and must not import the services' platform code, so it
// keeps this small loader of its own.)
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Config is everything the gateway reads from its environment.
type Config struct {
	HTTPAddr       string   // TM_HTTP_ADDR
	MetricsAddr    string   // TM_METRICS_ADDR
	LogLevel       string   // TM_LOG_LEVEL
	AllowedOrigins []string // ALLOWED_FRONTEND_ORIGINS
	MaxBodyBytes   int64    // TM_MAX_BODY_BYTES
	TokenAddr      string   // TM_TOKEN_ADDR
	TeamAddr       string   // TM_TEAM_ADDR
	AuditAddr      string   // TM_AUDIT_ADDR
	UsageAddr      string   // TM_USAGE_ADDR
	HealthAddr     string   // TM_HEALTH_ADDR
	// TrustedProxies (TM_TRUSTED_PROXIES) are the load balancers and
	// proxies in front of the gateway whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
}

// DefaultAllowedOrigins are v2.7's defaults for ALLOWED_FRONTEND_ORIGINS.
var DefaultAllowedOrigins = []string{"http://localhost:5173", "https://token.blocktempo.ai"}

type loader struct {
	lookup func(string) (string, bool)
	read   map[string]bool
	errs   []error
}

func (l *loader) get(name, def string) string {
	l.read[name] = true
	if v, ok := l.lookup(name); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return def
}

func (l *loader) hostPort(name, def string) string {
	v := l.get(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		l.errs = append(l.errs, fmt.Errorf("%s: %q is not host:port", name, v))
	}
	return v
}

// Load reads the configuration through lookup (os.LookupEnv in production).
// It returns every problem at once, and the names of the variables it read.
func Load(lookup func(string) (string, bool)) (Config, []string, error) {
	l := &loader{lookup: lookup, read: map[string]bool{}}
	c := Config{
		HTTPAddr:    l.hostPort("TM_HTTP_ADDR", "127.0.0.1:8000"),
		MetricsAddr: l.hostPort("TM_METRICS_ADDR", "127.0.0.1:9200"),
		LogLevel:    l.get("TM_LOG_LEVEL", "info"),
		TokenAddr:   l.hostPort("TM_TOKEN_ADDR", "127.0.0.1:9101"),
		TeamAddr:    l.hostPort("TM_TEAM_ADDR", "127.0.0.1:9102"),
		AuditAddr:   l.hostPort("TM_AUDIT_ADDR", "127.0.0.1:9103"),
		UsageAddr:   l.hostPort("TM_USAGE_ADDR", "127.0.0.1:9104"),
		HealthAddr:  l.hostPort("TM_HEALTH_ADDR", "127.0.0.1:9105"),
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		l.errs = append(l.errs, fmt.Errorf("TM_LOG_LEVEL: %q is not one of debug, info, warn, error", c.LogLevel))
	}

	c.AllowedOrigins = DefaultAllowedOrigins
	if v := l.get("ALLOWED_FRONTEND_ORIGINS", ""); v != "" {
		c.AllowedOrigins = nil
		for _, o := range strings.Split(v, ",") {
			o = strings.TrimRight(strings.TrimSpace(o), "/")
			if o == "" {
				continue
			}
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
				l.errs = append(l.errs, fmt.Errorf("ALLOWED_FRONTEND_ORIGINS: %q is not an origin like https://app.example.com", o))
				continue
			}
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}

	c.MaxBodyBytes = 1 << 20
	if v := l.get("TM_MAX_BODY_BYTES", ""); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1024 || n > 64<<20 {
			l.errs = append(l.errs, fmt.Errorf("TM_MAX_BODY_BYTES: %q must be an integer between 1024 and %d", v, 64<<20))
		} else {
			c.MaxBodyBytes = n
		}
	}

	if v := l.get("TM_TRUSTED_PROXIES", ""); v != "" {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			p, err := netip.ParsePrefix(item)
			if err != nil {
				a, aerr := netip.ParseAddr(item)
				if aerr != nil {
					l.errs = append(l.errs, fmt.Errorf("TM_TRUSTED_PROXIES: %q is not an IP address or CIDR like 10.0.0.0/8", item))
					continue
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			c.TrustedProxies = append(c.TrustedProxies, p.Masked())
		}
	}

	names := make([]string, 0, len(l.read))
	for n := range l.read {
		names = append(names, n)
	}
	sort.Strings(names)
	return c, names, errors.Join(l.errs...)
}
