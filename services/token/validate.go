package token

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Limits of the inputs, checked before anything is written.
const (
	maxNameLen        = 255
	maxTeamIDLen      = 50
	maxTokenDescLen   = 500
	maxRouteDescLen   = 1000
	maxScopes         = 100
	maxTags           = 20
	maxBackendURLLen  = 2048
	maxSecretValueLen = 8192
	maxExpiresDays    = 3650
	maxGraceSeconds   = 30 * 24 * 3600
	defaultGrace      = 24 * 3600
)

var (
	serviceScope  = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,50}$`)
	secretName    = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
	headerName    = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	pathPattern   = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+$`)
	teamIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,49}$`)
)

// checkText validates a free-text field: valid UTF-8, no control characters
// except tab/newline, at most max characters; required means non-blank.
func checkText(field, s string, max int, required bool) error {
	if required && strings.TrimSpace(s) == "" {
		return errs.Invalid(field + " is required")
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' || r == 0x7f }) {
		return errs.Invalid(field + " contains invalid characters")
	}
	if utf8.RuneCountInString(s) > max {
		return errs.Invalid(fmt.Sprintf("%s must be at most %d characters", field, max))
	}
	return nil
}

func checkTeamID(id string) error {
	if !teamIDPattern.MatchString(id) {
		return errs.Invalid("team_id must be 1-50 characters [a-z0-9_-]")
	}
	return nil
}

// normalizeScopes validates the syntax of scopes ("*", a service name,
// "tag:<tag>") and drops duplicates. A token needs at least one scope
// (contract §1.4): a missing, null or empty list is refused, never widened.
func normalizeScopes(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, errs.Invalid("scopes must have at least one entry")
	}
	if len(in) > maxScopes {
		return nil, errs.Invalid(fmt.Sprintf("at most %d scopes", maxScopes))
	}
	out := make([]string, 0, len(in))
	for _, s := range in {
		ok := s == "*" || serviceScope.MatchString(s)
		if tag, isTag := strings.CutPrefix(s, "tag:"); isTag {
			ok = tagPattern.MatchString(tag)
		}
		if !ok {
			return nil, errs.Invalid(fmt.Sprintf("Invalid scope %q: use \"*\", a service name [a-z0-9_-] or \"tag:<tag>\"", clip(s)))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// checkScopesKnown refuses a scope that grants nothing: a service scope must
// be the service segment (the second path segment, as the Worker matches it,
// contract §4) of some route, a "tag:<t>" scope must name a tag some route
// carries; "*" is always valid. It reads the routes table inside tx, the
// transaction that writes the token.
func checkScopesKnown(ctx context.Context, tx pgx.Tx, scopes []string) error {
	unknown, err := queries.UnknownScope(ctx, tx, scopes)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("check scopes against routes: %w", err)
	}
	if tag, isTag := strings.CutPrefix(unknown, "tag:"); isTag {
		return errs.Invalid(fmt.Sprintf("Unknown scope %q: no route has the tag %q", clip(unknown), clip(tag)))
	}
	return errs.Invalid(fmt.Sprintf("Unknown scope %q: no route path has %q as its service segment (like /api/%s)", clip(unknown), clip(unknown), clip(unknown)))
}

func normalizeTags(in []string) ([]string, error) {
	if len(in) > maxTags {
		return nil, errs.Invalid(fmt.Sprintf("at most %d tags", maxTags))
	}
	out := make([]string, 0, len(in))
	for _, t := range in {
		if !tagPattern.MatchString(t) {
			return nil, errs.Invalid(fmt.Sprintf("Invalid tag %q: 1-50 characters [A-Za-z0-9_.-]", clip(t)))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// checkRoutePath accepts a normalised absolute path of at least one
// segment: no "..", no "//", no trailing slash, no query or fragment,
// unreserved characters only.
func checkRoutePath(p string) error {
	if len(p) > maxNameLen {
		return errs.Invalid("path must be at most 255 characters")
	}
	if !strings.HasPrefix(p, "/") {
		return errs.Invalid("path must start with /")
	}
	if !pathPattern.MatchString(p) || path.Clean(p) != p || slices.Contains(strings.Split(p, "/"), "..") || slices.Contains(strings.Split(p, "/"), ".") {
		return errs.Invalid("path must be a normalised path like /api/service: segments of [A-Za-z0-9._~-], no '.' or '..' segments, no trailing slash")
	}
	return nil
}

// checkBackendURL accepts an absolute http(s) URL with a host and no
// credentials, query-less fragments or whitespace.
func checkBackendURL(s string) error {
	if s == "" {
		return errs.Invalid("backend_url is required")
	}
	if len(s) > maxBackendURLLen || strings.ContainsAny(s, " \t\r\n\\") {
		return errs.Invalid("backend_url must be an absolute http(s) URL")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" || u.Opaque != "" {
		return errs.Invalid("backend_url must be an absolute http(s) URL")
	}
	if u.User != nil {
		return errs.Invalid("backend_url must not contain credentials; use backend_auth_type")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return errs.Invalid("backend_url must not contain a fragment")
	}
	return nil
}

// authRefKeys lists, per backend auth type, the config keys that name
// secrets (required) and the other allowed keys (contract §4.6).
var authRefKeys = map[string]struct{ refs, optional []string }{
	"none":    {},
	"bearer":  {refs: []string{"token_ref"}},
	"api-key": {refs: []string{"key_ref"}, optional: []string{"header_name"}},
	"basic":   {refs: []string{"username_ref", "password_ref"}},
}

// checkAuth validates type and config and returns the secret names the
// config references.
func checkAuth(typ string, config map[string]any) ([]string, error) {
	spec, ok := authRefKeys[typ]
	if !ok {
		return nil, errs.Invalid("backend_auth_type must be one of none, bearer, api-key, basic")
	}
	if typ == "none" {
		if len(config) > 0 {
			return nil, errs.Invalid("backend_auth_config must be empty when backend_auth_type is none")
		}
		return nil, nil
	}
	var refs []string
	for k, v := range config {
		s, isString := v.(string)
		switch {
		case slices.Contains(spec.refs, k):
			if !isString || !secretName.MatchString(s) {
				return nil, errs.Invalid(fmt.Sprintf("backend_auth_config.%s must be a secret name of 1-64 characters [A-Za-z0-9_]", k))
			}
			if !slices.Contains(refs, s) {
				refs = append(refs, s)
			}
		case slices.Contains(spec.optional, k):
			if !isString || !headerName.MatchString(s) || forbiddenHeader(s) {
				return nil, errs.Invalid("backend_auth_config.header_name must be a header name of 1-64 characters [A-Za-z0-9-]")
			}
		default:
			return nil, errs.Invalid(fmt.Sprintf("backend_auth_config.%s is not allowed for backend_auth_type %s", clip(k), typ))
		}
	}
	for _, k := range spec.refs {
		if _, ok := config[k]; !ok {
			return nil, errs.Invalid(fmt.Sprintf("backend_auth_config.%s is required for backend_auth_type %s", k, typ))
		}
	}
	slices.Sort(refs)
	return refs, nil
}

func forbiddenHeader(h string) bool {
	switch strings.ToLower(h) {
	case "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive", "proxy-authorization", "cookie":
		return true
	}
	return false
}

// checkSecrets validates backend_auth_secrets against the referenced names.
func checkSecrets(secrets map[string]string, refs []string) error {
	for name, v := range secrets {
		if !secretName.MatchString(name) {
			return errs.Invalid(fmt.Sprintf("backend_auth_secrets: invalid secret name %q", clip(name)))
		}
		if !slices.Contains(refs, name) {
			return errs.Invalid(fmt.Sprintf("backend_auth_secrets: %s is not referenced by backend_auth_config", name))
		}
		if v == "" || len(v) > maxSecretValueLen || !utf8.ValidString(v) {
			return errs.Invalid(fmt.Sprintf("backend_auth_secrets: the value of %s must be 1-%d bytes of UTF-8", name, maxSecretValueLen))
		}
	}
	return nil
}

// checkSecretsHeld refuses a config that names a secret the route neither
// holds nor is given in this request: a route can use only its own
// credentials (KV publishes them under the route's path, see
// routeSecretRef), and a reference with no value would reach the backend
// without one.
func checkSecretsHeld(refs, held []string, supplied map[string]string) error {
	for _, ref := range refs {
		if _, ok := supplied[ref]; !ok && !slices.Contains(held, ref) {
			return errs.Invalid(fmt.Sprintf("backend_auth_config names secret %s, which this route does not hold: send its value in backend_auth_secrets (a route uses only its own secrets)", ref))
		}
	}
	return nil
}

// clip shortens user input quoted in an error message.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
