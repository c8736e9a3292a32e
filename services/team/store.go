package team

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Store holds the team service's queries, over a pool or a transaction.
type Store struct {
	q db.DBTX
}

// NewStore returns a Store running its queries on q.
func NewStore(q db.DBTX) *Store { return &Store{q: q} }

// Principal returns the roles of a Clerk user. A signed-in user with no
// roles is still a principal (any signed-in user may read routes).
func (s *Store) UserPrincipal(ctx context.Context, userID string) (*auth.Principal, error) {
	p := &auth.Principal{Kind: auth.KindUser, ID: userID, TeamRoles: map[string]auth.Role{}}
	rows, err := s.q.Query(ctx, `SELECT team_id, role FROM team.memberships WHERE user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("load memberships: %w", err)
	}
	for rows.Next() {
		var teamID, role string
		if err := rows.Scan(&teamID, &role); err != nil {
			rows.Close()
			return nil, err
		}
		p.TeamRoles[teamID] = auth.Role(role)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load memberships: %w", err)
	}
	var global string
	err = s.q.QueryRow(ctx, `SELECT role FROM team.global_roles WHERE user_id = $1`, userID).Scan(&global)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("load global role: %w", err)
	default:
		p.GlobalRole = auth.Role(global)
	}
	return p, nil
}

// AdminKeyPrincipal returns the principal of a live admin key by the hash
// of the key, and marks it used (at most once a minute, to keep reads cheap).
// A revoked or unknown key is NotFound.
func (s *Store) AdminKeyPrincipal(ctx context.Context, keyHash string) (*auth.Principal, error) {
	p := &auth.Principal{Kind: auth.KindAdminKey, TeamRoles: map[string]auth.Role{}}
	var global string
	err := s.q.QueryRow(ctx, `
		UPDATE team.admin_keys
		   SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < now() - interval '1 minute'
		                           THEN now() ELSE last_used_at END
		 WHERE key_hash = $1 AND revoked_at IS NULL
		RETURNING id, name, global_role`, keyHash).Scan(&p.ID, &p.Name, &global)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errs.NotFound("admin key not found")
	}
	if err != nil {
		return nil, fmt.Errorf("load admin key: %w", err)
	}
	p.GlobalRole = auth.Role(global)
	rows, err := s.q.Query(ctx, `SELECT team_id, role FROM team.admin_key_roles WHERE key_id = $1`, p.ID)
	if err != nil {
		return nil, fmt.Errorf("load admin key roles: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var teamID, role string
		if err := rows.Scan(&teamID, &role); err != nil {
			return nil, err
		}
		p.TeamRoles[teamID] = auth.Role(role)
	}
	return p, rows.Err()
}

// Team is a row of team.teams.
type Team struct {
	ID, Name, Description, Color, Icon, CreatedBy string
	CreatedAt, UpdatedAt                          time.Time
}

// CountTeams returns how many teams exist.
func (s *Store) CountTeams(ctx context.Context) (int64, error) {
	var n int64
	if err := s.q.QueryRow(ctx, `SELECT count(*) FROM team.teams`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count teams: %w", err)
	}
	return n, nil
}

// TeamsByID returns the teams with the given ids (unknown ids are skipped).
func (s *Store) TeamsByID(ctx context.Context, ids []string) ([]Team, error) {
	rows, err := s.q.Query(ctx, `
		SELECT id, name, description, color, icon, created_by, created_at, updated_at
		  FROM team.teams WHERE id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("load teams: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Team, error) {
		var t Team
		err := row.Scan(&t.ID, &t.Name, &t.Description, &t.Color, &t.Icon, &t.CreatedBy, &t.CreatedAt, &t.UpdatedAt)
		return t, err
	})
}
