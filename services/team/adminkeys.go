package team

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/team/store"
)

// AdminKey is an admin API key as listed (never its secret).
type AdminKey struct {
	ID, Name, Prefix, CreatedBy string
	GlobalRole                  auth.Role
	TeamRoles                   map[string]auth.Role
	CreatedAt                   time.Time
	LastUsedAt, RevokedAt       *time.Time
}

// CreateAdminKey creates a key with roles like a person's and returns it
// with its secret, which is shown this once and stored only hashed. Only a
// global ADMIN may create keys (a key may hold any role).
func (s *Service) CreateAdminKey(ctx context.Context, name, globalRole string, teamRoles map[string]string) (AdminKey, string, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return AdminKey{}, "", err
	}
	if err := authz.Authorize(p, authz.AdminKeyManage, authz.Resource{}); err != nil {
		return AdminKey{}, "", err
	}
	switch {
	case strings.TrimSpace(name) == "":
		return AdminKey{}, "", errs.Invalid("Admin key name must not be empty")
	case utf8.RuneCountInString(name) > maxKeyName:
		return AdminKey{}, "", errs.Invalid("Admin key name must be at most 100 characters")
	case strings.ContainsFunc(name, unicode.IsControl):
		return AdminKey{}, "", errs.Invalid("Admin key name must not contain control characters")
	case globalRole != "" && globalRole != string(auth.RoleAdmin):
		return AdminKey{}, "", errs.Invalid("Invalid global role: " + truncate(globalRole, 20) + " (only ADMIN or empty)")
	}
	roles, err := parseTeamRoles(teamRoles)
	if err != nil {
		return AdminKey{}, "", err
	}
	teams := make([]string, 0, len(roles))
	for t := range roles {
		teams = append(teams, t)
	}
	slices.Sort(teams)
	key := auth.NewAdminKey()
	var idBytes [8]byte
	_, _ = rand.Read(idBytes[:])
	k := AdminKey{ID: "ak_" + hex.EncodeToString(idBytes[:]), Name: name, Prefix: key[:keyPrefixLen], CreatedBy: p.ID,
		GlobalRole: auth.Role(globalRole), TeamRoles: roles}
	err = s.write(ctx, func(tx pgx.Tx) error {
		exists, err := existingTeams(ctx, tx, teams)
		if err != nil {
			return err
		}
		for _, t := range teams {
			if !exists[t] {
				return errs.Invalid("Team does not exist: " + t)
			}
		}
		if k.CreatedAt, err = teamdb.InsertAdminKey(ctx, tx, store.InsertAdminKeyParams{ID: k.ID, Name: k.Name,
			KeyHash: auth.HashKey(key), Prefix: k.Prefix, GlobalRole: globalRole, CreatedBy: p.ID}); err != nil {
			return fmt.Errorf("insert admin key: %w", err)
		}
		details := map[string]any{"name": name, "prefix": k.Prefix, "global_role": globalRole}
		plain := map[string]any{}
		for _, t := range teams {
			if err := teamdb.InsertAdminKeyRole(ctx, tx, store.InsertAdminKeyRoleParams{KeyID: k.ID, TeamID: t, Role: string(roles[t])}); err != nil {
				return fmt.Errorf("insert admin key role: %w", err)
			}
			plain[t] = string(roles[t])
		}
		details["team_roles"] = plain
		roleChanges, err := keyRoleChanges(ctx, tx, "create", k.ID, name, plain)
		if err != nil {
			return err
		}
		changes := []auditlog.Change{{Action: "create", EntityType: "admin_key", EntityID: k.ID, Details: details}}
		return audit(ctx, tx, append(changes, roleChanges...)...)
	})
	if err != nil {
		return AdminKey{}, "", err
	}
	return k, key, nil
}

// ListAdminKeys lists every admin key, newest first, revoked ones too.
func (s *Service) ListAdminKeys(ctx context.Context) ([]AdminKey, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := authz.Authorize(p, authz.AdminKeyManage, authz.Resource{}); err != nil {
		return nil, err
	}
	rows, err := teamdb.ListAdminKeys(ctx, s.pool)
	if err != nil {
		return nil, fmt.Errorf("list admin keys: %w", err)
	}
	out := make([]AdminKey, len(rows))
	for i, r := range rows {
		roles, err := decodeTeamRoles(r.TeamRoles)
		if err != nil {
			return nil, fmt.Errorf("list admin keys: %w", err)
		}
		k := AdminKey{ID: r.ID, Name: r.Name, Prefix: r.Prefix, GlobalRole: auth.Role(r.GlobalRole), CreatedBy: r.CreatedBy,
			CreatedAt: r.CreatedAt, LastUsedAt: r.LastUsedAt, RevokedAt: r.RevokedAt, TeamRoles: map[string]auth.Role{}}
		for t, role := range roles {
			k.TeamRoles[t] = auth.Role(role)
		}
		out[i] = k
	}
	return out, nil
}

// RevokeAdminKey revokes a key; revoking a revoked key succeeds again.
// Services that cached the key's principal stop accepting it within the
// cache TTL (auth.CachingResolver, 5 s).
func (s *Service) RevokeAdminKey(ctx context.Context, id string) error {
	p, err := auth.Caller(ctx)
	if err != nil {
		return err
	}
	if !opaqueIDPattern.MatchString(id) {
		return errs.Invalid("Invalid admin key id")
	}
	if err := authz.Authorize(p, authz.AdminKeyManage, authz.Resource{}); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx) error {
		k, err := teamdb.RevokeAdminKey(ctx, tx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return errs.NotFound("Admin key not found")
		}
		if err != nil {
			return fmt.Errorf("revoke admin key: %w", err)
		}
		if !k.WasLive {
			return nil
		}
		name, prefix, global := k.Name, k.Prefix, k.GlobalRole
		roles, err := decodeTeamRoles(k.TeamRoles)
		if err != nil {
			return fmt.Errorf("revoke admin key: %w", err)
		}
		// What the key was, so the trail says which key lost which powers:
		// the same fields as its create event. The prefix is the part of the
		// key kept in clear for listings; the key and its hash never leave
		// team.admin_keys.
		teamRoles := make(map[string]any, len(roles))
		for t, r := range roles {
			teamRoles[t] = r
		}
		roleChanges, err := keyRoleChanges(ctx, tx, "delete", id, name, teamRoles)
		if err != nil {
			return err
		}
		changes := []auditlog.Change{{Action: "revoke", EntityType: "admin_key", EntityID: id,
			Details: map[string]any{"name": name, "prefix": prefix, "global_role": global, "team_roles": teamRoles}}}
		return audit(ctx, tx, append(changes, roleChanges...)...)
	})
}

// keyRoleChanges are the per-team events of a key's team roles being
// granted (create) or ending (delete): the admin_key event itself has no
// team, so without them a team's ADMINs, who read their team's trail only,
// would not see a key gaining or losing power over their team. Keyed like
// the creator-key grant of CreateTeam, and named by the key's name.
func keyRoleChanges(ctx context.Context, q store.DBTX, action, keyID, keyName string, roles map[string]any) ([]auditlog.Change, error) {
	teams := slices.Sorted(maps.Keys(roles))
	if len(teams) == 0 {
		return nil, nil
	}
	names, err := teamNames(ctx, q, teams)
	if err != nil {
		return nil, err
	}
	var out []auditlog.Change
	for _, t := range teams {
		d := map[string]any{"name": keyName, "admin_key_id": keyID, "team_id": t, "team_name": names[t]}
		if action == "create" {
			d["role"], d["previous_role"] = roles[t], ""
		} else {
			d["previous_role"] = roles[t]
		}
		out = append(out, auditlog.Change{Action: action, EntityType: "admin_key_role", EntityID: keyID + "@" + t, Team: t, Details: d})
	}
	return out, nil
}
