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
	"github.com/tokenmanager/tokenmanager/services/token/store"
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

// queries is the token service's SQL (package store).
var queries = store.New()

// routeOf is the domain form of a stored route; an undecodable config reads
// as none.
func routeOf(row *store.TokenRoute, err error) (*Route, error) {
	if err != nil {
		return nil, err
	}
	r := &Route{ID: row.ID, Name: row.Name, Path: row.Path, BackendURL: row.BackendUrl, Description: row.Description,
		Tags: row.Tags, AuthType: row.BackendAuthType, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt}
	if len(row.BackendAuthConfig) > 0 && string(row.BackendAuthConfig) != "null" {
		if err := json.Unmarshal(row.BackendAuthConfig, &r.AuthConfig); err != nil {
			r.AuthConfig = nil
		}
	}
	return r, nil
}

// configJSON is the stored form of an auth config: NULL when empty.
func configJSON(c map[string]any) []byte {
	if len(c) == 0 {
		return nil
	}
	b, _ := json.Marshal(c)
	return b
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
		r, err := routeOf(queries.InsertRoute(ctx, tx, store.InsertRouteParams{Name: in.Name, Path: in.Path, BackendUrl: in.BackendURL,
			Description: in.Description, Tags: in.Tags, BackendAuthType: in.AuthType, BackendAuthConfig: configJSON(in.AuthConfig)}))
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
		if err := queries.PutRouteSecret(ctx, tx, store.PutRouteSecretParams{RouteID: r.ID, Name: name, Ciphertext: ct}); err != nil {
			return nil, err
		}
		if err := enqueueKV(ctx, tx, key); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// dropUnreferencedSecrets deletes the secrets of route r that refs no
// longer names, and enqueues their KV deletes.
func dropUnreferencedSecrets(ctx context.Context, tx pgx.Tx, r *Route, refs []string) ([]string, error) {
	if refs == nil {
		refs = []string{}
	}
	names, err := queries.DeleteRouteSecretsExcept(ctx, tx, store.DeleteRouteSecretsExceptParams{RouteID: r.ID, Keep: refs})
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
	rows, err := queries.ListRoutes(ctx, s.Pool)
	if err != nil {
		return nil, err
	}
	out := make([]*Route, len(rows))
	for i, row := range rows {
		out[i], _ = routeOf(row, nil)
	}
	return out, nil
}

// ListRouteTags returns the distinct tags of all routes, sorted.
func (s *Service) ListRouteTags(ctx context.Context) ([]string, error) {
	return queries.ListRouteTags(ctx, s.Pool)
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
		old, err := routeOf(queries.LockRoute(ctx, tx, id))
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
		held, err := queries.HeldSecretNames(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := checkSecretsHeld(refs, held, in.Secrets); err != nil {
			return err
		}
		r, err := routeOf(queries.UpdateRoute(ctx, tx, store.UpdateRouteParams{ID: id, Name: m.Name, BackendUrl: m.BackendURL,
			Description: m.Description, Tags: m.Tags, BackendAuthType: m.AuthType, BackendAuthConfig: configJSON(m.AuthConfig)}))
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
		r, err := routeOf(queries.LockRoute(ctx, tx, id))
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
		if err := queries.DeleteRoute(ctx, tx, id); err != nil {
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
