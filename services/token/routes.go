package token

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Route is a route as stored (secrets are separate and never shown).
type Route struct {
	ID          int64
	Name        string
	Path        string
	BackendURL  string
	Description string
	Tags        []string
	AuthType    string
	AuthConfig  map[string]any // nil when none
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// RouteInput is a create, or the merged state of an update.
type RouteInput struct {
	Name, Path, BackendURL, Description string
	Tags                                []string
	AuthType                            string
	AuthConfig                          map[string]any
	Secrets                             map[string]string
}

// validate checks a whole route and returns the secret names it references.
func (in *RouteInput) validate() ([]string, error) {
	if err := checkText("name", in.Name, maxNameLen, true); err != nil {
		return nil, err
	}
	if err := checkRoutePath(in.Path); err != nil {
		return nil, err
	}
	if err := checkBackendURL(in.BackendURL); err != nil {
		return nil, err
	}
	if err := checkText("description", in.Description, maxRouteDescLen, false); err != nil {
		return nil, err
	}
	tags, err := normalizeTags(in.Tags)
	if err != nil {
		return nil, err
	}
	in.Tags = tags
	if in.AuthType == "" {
		in.AuthType = "none"
	}
	if len(in.AuthConfig) == 0 {
		in.AuthConfig = nil
	}
	refs, err := checkAuth(in.AuthType, in.AuthConfig)
	if err != nil {
		return nil, err
	}
	return refs, checkSecrets(in.Secrets, refs)
}

const routeColumns = `id, name, path, backend_url, description, tags, backend_auth_type, backend_auth_config, created_at, updated_at`

func scanRoute(row pgx.Row) (*Route, error) {
	var r Route
	var cfg []byte
	if err := row.Scan(&r.ID, &r.Name, &r.Path, &r.BackendURL, &r.Description, &r.Tags, &r.AuthType, &cfg, &r.CreatedAt, &r.UpdatedAt); err != nil {
		return nil, err
	}
	if len(cfg) > 0 && string(cfg) != "null" {
		if err := json.Unmarshal(cfg, &r.AuthConfig); err != nil {
			r.AuthConfig = nil
		}
	}
	return &r, nil
}

func configJSON(c map[string]any) any {
	if len(c) == 0 {
		return nil
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// CreateRoute adds a route and stores its secrets.
func (s *Service) CreateRoute(ctx context.Context, p *auth.Principal, in RouteInput) (*Route, error) {
	if err := authz.Authorize(p, authz.RouteCreate, authz.Resource{}); err != nil {
		return nil, err
	}
	refs, err := in.validate()
	if err != nil {
		return nil, err
	}
	if err := checkSecretsHeld(refs, nil, in.Secrets); err != nil {
		return nil, err
	}
	var out *Route
	err = db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		r, err := scanRoute(tx.QueryRow(ctx, `
			INSERT INTO token.routes (name, path, backend_url, description, tags, backend_auth_type, backend_auth_config)
			VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING `+routeColumns,
			in.Name, in.Path, in.BackendURL, in.Description, in.Tags, in.AuthType, configJSON(in.AuthConfig)))
		if db.IsUniqueViolation(err) {
			return errs.Conflict("Route path '" + in.Path + "' already exists")
		}
		if err != nil {
			return err
		}
		names, err := s.putSecrets(ctx, tx, r, in.Secrets)
		if err != nil {
			return err
		}
		if err := enqueueKV(ctx, tx, routesKey); err != nil {
			return err
		}
		out = r
		return auditlog.Record(ctx, tx, schema, auditlog.Change{Action: "create", EntityType: "route",
			EntityID: strconv.FormatInt(r.ID, 10), Details: routeDetails(r, names, nil)})
	})
	return out, err
}

// putSecrets stores secrets of route r (encrypted, bound to their KV key)
// and enqueues their KV writes. It returns the names written.
func (s *Service) putSecrets(ctx context.Context, tx pgx.Tx, r *Route, secrets map[string]string) ([]string, error) {
	var names []string
	for name := range secrets {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		key := routeSecretKey(r.Path, name)
		ct, err := s.Ring.Seal([]byte(secrets[name]), key)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO token.route_secrets (route_id, name, ciphertext) VALUES ($1, $2, $3)
			ON CONFLICT (route_id, name) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, sealed_as_legacy = false, updated_at = now()`,
			r.ID, name, ct); err != nil {
			return nil, err
		}
		if err := enqueueKV(ctx, tx, key); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// heldSecrets returns the names of the secrets route id holds.
func heldSecrets(ctx context.Context, tx pgx.Tx, routeID int64) ([]string, error) {
	rows, _ := tx.Query(ctx, `SELECT name FROM token.route_secrets WHERE route_id = $1`, routeID)
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// dropUnreferencedSecrets deletes the secrets of route r that refs no
// longer names, and enqueues their KV deletes.
func dropUnreferencedSecrets(ctx context.Context, tx pgx.Tx, r *Route, refs []string) ([]string, error) {
	if refs == nil {
		refs = []string{}
	}
	rows, _ := tx.Query(ctx, `DELETE FROM token.route_secrets WHERE route_id = $1 AND NOT (name = ANY($2)) RETURNING name`, r.ID, refs)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = routeSecretKey(r.Path, n)
	}
	slices.Sort(names)
	return names, enqueueKV(ctx, tx, keys...)
}

// ListRoutes returns every route, newest first. Any authenticated caller
// may read routes (the scope picker needs them).
func (s *Service) ListRoutes(ctx context.Context) ([]*Route, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+routeColumns+` FROM token.routes ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Route, error) { return scanRoute(r) })
}

// ListRouteTags returns the distinct tags of all routes, sorted.
func (s *Service) ListRouteTags(ctx context.Context) ([]string, error) {
	rows, _ := s.Pool.Query(ctx, `SELECT DISTINCT unnest(tags) AS tag FROM token.routes ORDER BY tag`)
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// RoutePatch is an update; nil fields stay as they are. AuthConfigSet with a
// nil AuthConfig clears the config.
type RoutePatch struct {
	Name, BackendURL, Description, AuthType *string
	Tags                                    []string
	TagsSet                                 bool
	AuthConfig                              map[string]any
	AuthConfigSet                           bool
	Secrets                                 map[string]string
}

// UpdateRoute changes a route (not its path), stores new secrets and drops
// the secrets its config no longer references.
func (s *Service) UpdateRoute(ctx context.Context, p *auth.Principal, id int64, in RoutePatch) (*Route, error) {
	if err := authz.Authorize(p, authz.RouteUpdate, authz.Resource{}); err != nil {
		return nil, err
	}
	if in.Name == nil && in.BackendURL == nil && in.Description == nil && in.AuthType == nil && !in.TagsSet && !in.AuthConfigSet && len(in.Secrets) == 0 {
		return nil, errs.Invalid("No fields to update")
	}
	var out *Route
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		old, err := scanRoute(tx.QueryRow(ctx, `SELECT `+routeColumns+` FROM token.routes WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return errs.NotFound("Route not found")
		}
		if err != nil {
			return err
		}
		m := RouteInput{Name: old.Name, Path: old.Path, BackendURL: old.BackendURL, Description: old.Description,
			Tags: old.Tags, AuthType: old.AuthType, AuthConfig: old.AuthConfig, Secrets: in.Secrets}
		if in.Name != nil {
			m.Name = *in.Name
		}
		if in.BackendURL != nil {
			m.BackendURL = *in.BackendURL
		}
		if in.Description != nil {
			m.Description = *in.Description
		}
		if in.TagsSet {
			m.Tags = in.Tags
		}
		if in.AuthType != nil {
			m.AuthType = *in.AuthType
			if m.AuthType == "none" && !in.AuthConfigSet {
				m.AuthConfig = nil // switching to none drops the references
			}
		}
		if in.AuthConfigSet {
			m.AuthConfig = in.AuthConfig
		}
		refs, err := m.validate()
		if err != nil {
			return err
		}
		held, err := heldSecrets(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := checkSecretsHeld(refs, held, in.Secrets); err != nil {
			return err
		}
		r, err := scanRoute(tx.QueryRow(ctx, `
			UPDATE token.routes SET name = $2, backend_url = $3, description = $4, tags = $5, backend_auth_type = $6,
			  backend_auth_config = $7::jsonb, updated_at = now()
			WHERE id = $1 RETURNING `+routeColumns,
			id, m.Name, m.BackendURL, m.Description, m.Tags, m.AuthType, configJSON(m.AuthConfig)))
		if err != nil {
			return err
		}
		dropped, err := dropUnreferencedSecrets(ctx, tx, r, refs)
		if err != nil {
			return err
		}
		written, err := s.putSecrets(ctx, tx, r, in.Secrets)
		if err != nil {
			return err
		}
		if err := enqueueKV(ctx, tx, routesKey); err != nil {
			return err
		}
		out = r
		return auditlog.Record(ctx, tx, schema, auditlog.Change{Action: "update", EntityType: "route",
			EntityID: strconv.FormatInt(id, 10), Details: routeDetails(r, written, dropped)})
	})
	return out, err
}

// DeleteRoute removes a route and the secrets it owns (from KV too).
func (s *Service) DeleteRoute(ctx context.Context, p *auth.Principal, id int64) error {
	if err := authz.Authorize(p, authz.RouteDelete, authz.Resource{}); err != nil {
		return err
	}
	return db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		r, err := scanRoute(tx.QueryRow(ctx, `SELECT `+routeColumns+` FROM token.routes WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return errs.NotFound("Route not found")
		}
		if err != nil {
			return err
		}
		dropped, err := dropUnreferencedSecrets(ctx, tx, r, nil)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM token.routes WHERE id = $1`, id); err != nil {
			return err
		}
		if err := enqueueKV(ctx, tx, routesKey); err != nil {
			return err
		}
		return auditlog.Record(ctx, tx, schema, auditlog.Change{Action: "delete", EntityType: "route",
			EntityID: strconv.FormatInt(id, 10), Details: routeDetails(r, nil, dropped)})
	})
}

// routeDetails is the audit detail of a route change: names of secrets,
// never their values.
func routeDetails(r *Route, written, dropped []string) map[string]any {
	d := map[string]any{"name": r.Name, "path": r.Path, "backend_url": r.BackendURL, "tags": anySlice(r.Tags),
		"description": r.Description, "backend_auth_type": r.AuthType}
	if len(written) > 0 {
		d["secrets_set"] = anySlice(written)
	}
	if len(dropped) > 0 {
		d["secrets_removed"] = anySlice(dropped)
	}
	return d
}
