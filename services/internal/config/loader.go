package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Loader reads environment variables through a lookup function and collects
// every problem it finds. It is not safe for concurrent use.
type Loader struct {
	lookup   func(string) (string, bool)
	problems []string
}

// NewLoader returns a Loader reading through lookup: os.LookupEnv in
// production, a map's lookup in tests.
func NewLoader(lookup func(string) (string, bool)) *Loader {
	return &Loader{lookup: lookup}
}

// Error lists every configuration problem, one per line.
type Error struct {
	Problems []string // each "NAME: what is wrong"
}

func (e *Error) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// Err returns nil, or an *Error listing every problem recorded so far.
func (l *Loader) Err() error {
	if len(l.problems) == 0 {
		return nil
	}
	return &Error{Problems: slices.Clone(l.problems)}
}

// Problem records a problem with variable name that the Loader cannot see
// itself, such as two variables that contradict each other.
func (l *Loader) Problem(name, format string, args ...any) {
	l.problems = append(l.problems, name+": "+fmt.Sprintf(format, args...))
}

// get returns the value of name; a variable set to the empty string counts
// as unset, so that `FOO=` in an env file means "use the default".
func (l *Loader) get(name string) (string, bool) {
	v, ok := l.lookup(name)
	if !ok || v == "" {
		return "", false
	}
	return v, true
}

// String returns the value of name, or def when it is unset.
func (l *Loader) String(name, def string) string {
	if v, ok := l.get(name); ok {
		return v
	}
	return def
}

// Required returns the value of name and records a problem when it is unset.
func (l *Loader) Required(name string) string {
	v, ok := l.get(name)
	if !ok {
		l.Problem(name, "required but not set")
	}
	return v
}

// Secret returns the value of name as a Secret, "" when unset.
func (l *Loader) Secret(name string) Secret {
	v, _ := l.get(name)
	return Secret(v)
}

// RequiredSecret returns the value of name as a Secret and records a problem
// when it is unset or shorter than minLen bytes. Problems never include the
// value, nor its length.
func (l *Loader) RequiredSecret(name string, minLen int) Secret {
	v, ok := l.get(name)
	switch {
	case !ok:
		l.Problem(name, "required but not set")
	case len(v) < minLen:
		l.Problem(name, "must be at least %d characters long", minLen)
	}
	return Secret(v)
}

// Int returns the value of name as an integer in [min, max], or def when it
// is unset.
func (l *Loader) Int(name string, def, min, max int) int {
	v, ok := l.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		l.Problem(name, "%q is not an integer", v)
		return def
	}
	if n < min || n > max {
		l.Problem(name, "%d is out of range [%d, %d]", n, min, max)
		return def
	}
	return n
}

// Bool returns the value of name as accepted by strconv.ParseBool (1, t,
// true, 0, f, false, ...), or def when it is unset.
func (l *Loader) Bool(name string, def bool) bool {
	v, ok := l.get(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		l.Problem(name, "%q is not a boolean (use true or false)", v)
		return def
	}
	return b
}

// Duration returns the value of name as a non-negative time.Duration
// ("1.5s", "2m"), or def when it is unset.
func (l *Loader) Duration(name string, def time.Duration) time.Duration {
	v, ok := l.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		l.Problem(name, "%q is not a duration (examples: 500ms, 30s, 5m)", v)
		return def
	}
	if d < 0 {
		l.Problem(name, "%q must not be negative", v)
		return def
	}
	return d
}

// List returns the comma-separated value of name with items trimmed and
// empty items dropped, or a copy of def when it is unset.
func (l *Loader) List(name string, def []string) []string {
	v, ok := l.get(name)
	if !ok {
		return slices.Clone(def)
	}
	var items []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// URL returns the value of name, or def when it is unset, and records a
// problem unless it is an absolute URL with a host and, when schemes are
// given, one of those schemes. An unset variable with an empty def yields ""
// without a problem. Problems do not echo the value, since URLs can carry
// credentials.
func (l *Loader) URL(name, def string, schemes ...string) string {
	v := l.String(name, def)
	if v == "" {
		return ""
	}
	if msg := checkURL(v, schemes); msg != "" {
		l.Problem(name, "%s", msg)
	}
	return v
}

// SecretURL is URL for values that carry credentials, such as DATABASE_URL:
// it returns a Secret and records a problem when the variable is unset and
// required is true.
func (l *Loader) SecretURL(name string, required bool, schemes ...string) Secret {
	v, ok := l.get(name)
	switch {
	case !ok && required:
		l.Problem(name, "required but not set")
	case ok:
		if msg := checkURL(v, schemes); msg != "" {
			l.Problem(name, "%s", msg)
		}
	}
	return Secret(v)
}

func checkURL(v string, schemes []string) string {
	u, err := url.Parse(v)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "not an absolute URL (scheme://host/...)"
	}
	if len(schemes) > 0 && !slices.Contains(schemes, u.Scheme) {
		return fmt.Sprintf("scheme %q is not one of %s", u.Scheme, strings.Join(schemes, ", "))
	}
	return ""
}

// HostPort returns the value of name, or def when it is unset, and records a
// problem unless it is host:port with a numeric port (the host may be empty,
// as in ":9102", to listen on every interface). An unset variable with an
// empty def yields "" without a problem.
func (l *Loader) HostPort(name, def string) string {
	v := l.String(name, def)
	if v == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		l.Problem(name, "%q is not host:port", v)
		return v
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		l.Problem(name, "%q has an invalid port", v)
	}
	return v
}

// Parse reads name with parse, for types the Loader has no method for; def
// is returned when the variable is unset or invalid, and parse's error is
// recorded as a problem. parse must not put a secret value in its error.
//
//	level := config.Parse(l, "TM_LOG_LEVEL", slog.LevelInfo, logging.ParseLevel)
func Parse[T any](l *Loader, name string, def T, parse func(string) (T, error)) T {
	v, ok := l.get(name)
	if !ok {
		return def
	}
	t, err := parse(v)
	if err != nil {
		l.Problem(name, "%v", err)
		return def
	}
	return t
}
