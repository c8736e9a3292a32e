package token

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/token/keyring"
)

// KVSource computes what Cloudflare KV should hold, from PostgreSQL: the
// relay asks for the keys it is about to sync, the reconciler for all of
// them. Values are exactly contract §3.2's (fields may be added, none
// removed), so the v2.7 Worker keeps working.
type KVSource struct{ Ring *keyring.Ring }

// Owns reports whether key is one of the token service's keys; the
// reconciler never touches any other.
func (KVSource) Owns(key string) bool {
	return key == routesKey || strings.HasPrefix(key, "token:") || strings.HasPrefix(key, "secret:")
}

// kvToken is the value of token:<hash>.
type kvToken struct {
	Name      string   `json:"name"`
	TeamID    string   `json:"team_id"`
	Scopes    []string `json:"scopes"`
	CreatedAt string   `json:"created_at"`
	ExpiresAt *string  `json:"expires_at"`
	// Additions (v3): the token's id, and whether this is a rotated-out
	// secret in its grace period (its expires_at is the grace end).
	TokenID        int64 `json:"token_id"`
	PreviousSecret bool  `json:"previous_secret,omitempty"`
}

type kvRoute struct {
	URL  string   `json:"url"`
	Tags []string `json:"tags"`
	Auth *kvAuth  `json:"auth,omitempty"`
}

type kvAuth struct {
	Type   string         `json:"type"`
	Config map[string]any `json:"config"`
}

// pyTime formats t as v2.7 did (Python isoformat of a naive UTC datetime):
// no offset, microseconds unless zero. The Worker parses it with new Date().
func pyTime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04:05.000000")
}

func (src KVSource) tokens(ctx context.Context, q db.DBTX, hashes []string, out map[string][]byte) error {
	rows, err := queries.LiveSecrets(ctx, q, hashes)
	if err != nil {
		return err
	}
	for _, x := range rows {
		hash, created, expires, validUntil := x.Hash, x.CreatedAt, x.ExpiresAt, x.ValidUntil
		v := kvToken{TokenID: x.ID, Name: x.Name, TeamID: x.TeamID, Scopes: x.Scopes}
		v.CreatedAt = pyTime(created)
		if validUntil != nil {
			v.PreviousSecret = true
			if expires == nil || validUntil.Before(*expires) {
				expires = validUntil
			}
		}
		if expires != nil {
			s := pyTime(*expires)
			v.ExpiresAt = &s
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		out[tokenKey(hash)] = b
	}
	return nil
}

// secrets adds the secrets whose reference (routeSecretRef) is in refs, or
// all of them when refs is nil. A reference that is not a route's (a
// pre-0005 secret:<name>) has no value: its key is deleted.
func (src KVSource) secrets(ctx context.Context, q db.DBTX, refs []string, out map[string][]byte) error {
	var paths []string
	wanted := map[string]bool{}
	if refs != nil {
		paths = []string{}
		for _, ref := range refs {
			if path, _, ok := splitRouteSecretRef(ref); ok {
				paths, wanted[ref] = append(paths, path), true
			}
		}
	}
	rows, err := queries.RouteSecrets(ctx, q, paths)
	if err != nil {
		return err
	}
	for _, x := range rows {
		if refs != nil && !wanted[routeSecretRef(x.Path, x.Name)] {
			continue
		}
		key := routeSecretKey(x.Path, x.Name)
		pt, err := src.Ring.Open(x.Ciphertext, sealedAs(x.Path, x.Name, x.SealedAsLegacy))
		if err != nil {
			// The name is not secret; the value never appears in errors.
			return fmt.Errorf("%s: %w", key, err)
		}
		b, err := json.Marshal(map[string]string{"value": string(pt)})
		if err != nil {
			return err
		}
		out[key] = b
	}
	return nil
}

// sealedAs is the associated data a route secret was sealed with: its KV
// key, or its pre-0005 KV key until it is written again.
func sealedAs(path, name string, legacy bool) string {
	if legacy {
		return legacySecretKey(name)
	}
	return routeSecretKey(path, name)
}

// publishedAuth is a route's auth config as KV carries it: every reference
// names the route's own secret (routeSecretRef), other keys as stored.
func publishedAuth(path, typ string, cfg map[string]any) map[string]any {
	out := make(map[string]any, len(cfg))
	refKeys := authRefKeys[typ].refs
	for k, v := range cfg {
		if name, ok := v.(string); ok && slices.Contains(refKeys, k) {
			v = routeSecretRef(path, name)
		}
		out[k] = v
	}
	return out
}

func (src KVSource) routes(ctx context.Context, q db.DBTX, out map[string][]byte) error {
	rows, err := queries.RouteTable(ctx, q)
	if err != nil {
		return err
	}
	table := map[string]kvRoute{}
	for _, x := range rows {
		v := kvRoute{URL: x.BackendUrl, Tags: x.Tags}
		if v.Tags == nil {
			v.Tags = []string{}
		}
		if x.BackendAuthType != "" && x.BackendAuthType != "none" {
			cfg := map[string]any{}
			if len(x.BackendAuthConfig) > 0 {
				_ = json.Unmarshal(x.BackendAuthConfig, &cfg)
			}
			v.Auth = &kvAuth{Type: x.BackendAuthType, Config: publishedAuth(x.Path, x.BackendAuthType, cfg)}
		}
		table[x.Path] = v
	}
	b, err := json.Marshal(table)
	if err != nil {
		return err
	}
	out[routesKey] = b
	return nil
}

// Desired returns the wanted value of each of keys; a key missing from the
// result should not exist in KV. Run it in one snapshot (q a repeatable-read
// transaction) so all values are of one moment.
func (src KVSource) Desired(ctx context.Context, q db.DBTX, keys []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	hashes, refs := []string{}, []string{}
	withRoutes := false
	for _, k := range keys {
		switch {
		case k == routesKey:
			withRoutes = true
		case strings.HasPrefix(k, "token:"):
			hashes = append(hashes, strings.TrimPrefix(k, "token:"))
		case strings.HasPrefix(k, "secret:"):
			refs = append(refs, strings.TrimPrefix(k, "secret:"))
		}
	}
	if len(hashes) > 0 {
		if err := src.tokens(ctx, q, hashes, out); err != nil {
			return nil, err
		}
	}
	if len(refs) > 0 {
		if err := src.secrets(ctx, q, refs, out); err != nil {
			return nil, err
		}
	}
	if withRoutes {
		if err := src.routes(ctx, q, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// All returns every key KV should hold, with its value.
func (src KVSource) All(ctx context.Context, q db.DBTX) (map[string][]byte, error) {
	out := map[string][]byte{}
	if err := src.tokens(ctx, q, nil, out); err != nil {
		return nil, err
	}
	if err := src.secrets(ctx, q, nil, out); err != nil {
		return nil, err
	}
	return out, src.routes(ctx, q, out)
}
