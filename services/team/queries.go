package team

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// TeamWithCount is a team and how many people are in it.
type TeamWithCount struct {
	Team
	MemberCount int64
}

const teamColumns = `t.id, t.name, t.description, t.color, t.icon, t.created_by, t.created_at, t.updated_at,
	(SELECT count(*) FROM team.memberships m WHERE m.team_id = t.id)`

func scanTeam(row pgx.Row) (TeamWithCount, error) {
	var t TeamWithCount
	err := row.Scan(&t.ID, &t.Name, &t.Description, &t.Color, &t.Icon, &t.CreatedBy, &t.CreatedAt, &t.UpdatedAt, &t.MemberCount)
	return t, err
}

// ListTeams returns every team (all) or the teams with the given ids,
// newest first, with member counts.
func (s *Store) ListTeams(ctx context.Context, all bool, ids []string) ([]TeamWithCount, error) {
	rows, err := s.q.Query(ctx, `SELECT `+teamColumns+` FROM team.teams t
		WHERE $1 OR t.id = ANY($2) ORDER BY t.created_at DESC, t.id`, all, ids)
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (TeamWithCount, error) { return scanTeam(r) })
}

// GetTeam returns one team; lock takes a row lock that serializes the
// membership changes of the team (last-ADMIN checks) and its deletion.
func (s *Store) GetTeam(ctx context.Context, id string, lock bool) (TeamWithCount, error) {
	q := `SELECT ` + teamColumns + ` FROM team.teams t WHERE t.id = $1`
	if lock {
		q += ` FOR UPDATE OF t`
	}
	t, err := scanTeam(s.q.QueryRow(ctx, q, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, errs.NotFound("Team not found")
	}
	if err != nil {
		return t, fmt.Errorf("get team: %w", err)
	}
	return t, nil
}

// InsertTeam creates a team; a taken id, or the id of a deleted team, is a
// Conflict.
func (s *Store) InsertTeam(ctx context.Context, t Team) error {
	tag, err := s.q.Exec(ctx, `INSERT INTO team.teams (id, name, description, color, icon, created_by)
		SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM team.deleted_teams WHERE id = $1)`,
		t.ID, t.Name, t.Description, t.Color, t.Icon, t.CreatedBy)
	if err == nil && tag.RowsAffected() == 0 {
		return errs.Conflict(fmt.Sprintf("Team ID '%s' belonged to a deleted team and cannot be reused", t.ID))
	}
	if db.IsUniqueViolation(err) {
		return errs.Conflict(fmt.Sprintf("Team ID '%s' already exists", t.ID))
	}
	if err != nil {
		return fmt.Errorf("insert team: %w", err)
	}
	return nil
}

// TeamPatch holds the fields to change; nil leaves a field as it is.
type TeamPatch struct {
	Name, Description, Color, Icon *string
}

// UpdateTeam applies p to team id.
func (s *Store) UpdateTeam(ctx context.Context, id string, p TeamPatch) error {
	tag, err := s.q.Exec(ctx, `UPDATE team.teams SET
		name = COALESCE($2, name), description = COALESCE($3, description),
		color = COALESCE($4, color), icon = COALESCE($5, icon), updated_at = now()
		WHERE id = $1`, id, p.Name, p.Description, p.Color, p.Icon)
	if err != nil {
		return fmt.Errorf("update team: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errs.NotFound("Team not found")
	}
	return nil
}

// DeleteTeam deletes a team whose memberships and key roles are gone.
// DeleteTeam deletes a team and keeps its id in team.deleted_teams, so that
// the id is never given to a new team (see InsertTeam).
func (s *Store) DeleteTeam(ctx context.Context, id, by string) error {
	if _, err := s.q.Exec(ctx, `WITH gone AS (DELETE FROM team.teams WHERE id = $1 RETURNING id, name)
		INSERT INTO team.deleted_teams (id, name, deleted_by) SELECT id, name, $2 FROM gone
		ON CONFLICT (id) DO NOTHING`, id, by); err != nil {
		return fmt.Errorf("delete team: %w", err)
	}
	return nil
}

// ExistingTeams returns which of ids are teams.
func (s *Store) ExistingTeams(ctx context.Context, ids []string) (map[string]bool, error) {
	rows, err := s.q.Query(ctx, `SELECT id FROM team.teams WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("check teams: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("check teams: %w", err)
	}
	out := make(map[string]bool, len(found))
	for _, id := range found {
		out[id] = true
	}
	return out, nil
}

// Membership returns user's role in team, "" when not a member.
func (s *Store) Membership(ctx context.Context, user, team string) (auth.Role, error) {
	var role string
	err := s.q.QueryRow(ctx, `SELECT role FROM team.memberships WHERE user_id = $1 AND team_id = $2`, user, team).Scan(&role)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("load membership: %w", err)
	}
	return auth.Role(role), nil
}

// UpsertMembership gives user role in team.
func (s *Store) UpsertMembership(ctx context.Context, user, team string, role auth.Role, by string) error {
	_, err := s.q.Exec(ctx, `INSERT INTO team.memberships (user_id, team_id, role, created_by) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, team_id) DO UPDATE SET role = EXCLUDED.role, updated_at = now()`, user, team, string(role), by)
	if err != nil {
		return fmt.Errorf("upsert membership: %w", err)
	}
	return nil
}

// AddMembershipIfAbsent gives user role in team unless they already have
// one there; it reports whether it added.
func (s *Store) AddMembershipIfAbsent(ctx context.Context, user, team string, role auth.Role, by string) (bool, error) {
	tag, err := s.q.Exec(ctx, `INSERT INTO team.memberships (user_id, team_id, role, created_by) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, team_id) DO NOTHING`, user, team, string(role), by)
	if err != nil {
		return false, fmt.Errorf("add membership: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// DeleteMembership removes user from team.
func (s *Store) DeleteMembership(ctx context.Context, user, team string) error {
	if _, err := s.q.Exec(ctx, `DELETE FROM team.memberships WHERE user_id = $1 AND team_id = $2`, user, team); err != nil {
		return fmt.Errorf("delete membership: %w", err)
	}
	return nil
}

// CountAdmins returns how many ADMINs team has.
func (s *Store) CountAdmins(ctx context.Context, team string) (int, error) {
	var n int
	err := s.q.QueryRow(ctx, `SELECT count(*) FROM team.memberships WHERE team_id = $1 AND role = 'ADMIN'`, team).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count admins: %w", err)
	}
	return n, nil
}

// Member is a membership with what the users cache knows of the person.
type Member struct {
	UserID string
	Role   auth.Role
	CachedUser
	Cached bool
}

// TeamMembers returns the members of team, highest role first.
func (s *Store) TeamMembers(ctx context.Context, team string) ([]Member, error) {
	rows, err := s.q.Query(ctx, `
		SELECT m.user_id, m.role, u.user_id IS NOT NULL, u.email, u.first_name, u.last_name, u.image_url,
		       u.last_sign_in_ms, COALESCE(u.created_ms, 0), COALESCE(u.refreshed_at, 'epoch')
		  FROM team.memberships m LEFT JOIN team.users u ON u.user_id = m.user_id
		 WHERE m.team_id = $1
		 ORDER BY array_position(ARRAY['ADMIN','MANAGER','DEVELOPER','VIEWER'], m.role), m.created_at, m.user_id`, team)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Member, error) {
		var m Member
		var role string
		err := r.Scan(&m.UserID, &role, &m.Cached, &m.Email, &m.FirstName, &m.LastName, &m.ImageURL,
			&m.LastSignInMs, &m.CreatedMs, &m.RefreshedAt)
		m.Role, m.CachedUser.ID = auth.Role(role), m.UserID
		return m, err
	})
}

// RolesOfUsers returns the team roles and global roles of users.
func (s *Store) RolesOfUsers(ctx context.Context, users []string) (map[string]map[string]auth.Role, map[string]auth.Role, error) {
	team := map[string]map[string]auth.Role{}
	rows, err := s.q.Query(ctx, `SELECT user_id, team_id, role FROM team.memberships WHERE user_id = ANY($1)`, users)
	if err != nil {
		return nil, nil, fmt.Errorf("load roles: %w", err)
	}
	var u, t, r string
	_, err = pgx.ForEachRow(rows, []any{&u, &t, &r}, func() error {
		if team[u] == nil {
			team[u] = map[string]auth.Role{}
		}
		team[u][t] = auth.Role(r)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load roles: %w", err)
	}
	global := map[string]auth.Role{}
	rows, err = s.q.Query(ctx, `SELECT user_id, role FROM team.global_roles WHERE user_id = ANY($1)`, users)
	if err != nil {
		return nil, nil, fmt.Errorf("load global roles: %w", err)
	}
	_, err = pgx.ForEachRow(rows, []any{&u, &r}, func() error { global[u] = auth.Role(r); return nil })
	if err != nil {
		return nil, nil, fmt.Errorf("load global roles: %w", err)
	}
	return team, global, nil
}

// CachedUser is a Clerk user as the users cache holds it.
type CachedUser struct {
	ID                                   string
	Email, FirstName, LastName, ImageURL *string
	LastSignInMs                         *int64
	CreatedMs                            int64
	RefreshedAt                          time.Time
}

// Name is "First Last" as far as known.
func (u CachedUser) Name() string {
	var parts []string
	for _, p := range []*string{u.FirstName, u.LastName} {
		if p != nil && *p != "" {
			parts = append(parts, *p)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return parts[0] + " " + parts[1]
}

// CachedUser returns the cached profile of user, if any.
func (s *Store) CachedUser(ctx context.Context, user string) (CachedUser, bool, error) {
	u := CachedUser{ID: user}
	err := s.q.QueryRow(ctx, `SELECT email, first_name, last_name, image_url, last_sign_in_ms, created_ms, refreshed_at
		FROM team.users WHERE user_id = $1`, user).
		Scan(&u.Email, &u.FirstName, &u.LastName, &u.ImageURL, &u.LastSignInMs, &u.CreatedMs, &u.RefreshedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, false, nil
	}
	if err != nil {
		return u, false, fmt.Errorf("load cached user: %w", err)
	}
	return u, true, nil
}

// UpsertUsers refreshes the cache with users and returns the ids that it
// had never seen before.
func (s *Store) UpsertUsers(ctx context.Context, users []CachedUser) ([]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(users)
	if err != nil {
		return nil, err
	}
	rows, err := s.q.Query(ctx, `
		INSERT INTO team.users AS u (user_id, email, first_name, last_name, image_url, last_sign_in_ms, created_ms)
		SELECT x."ID", x."Email", x."FirstName", x."LastName", x."ImageURL", x."LastSignInMs", x."CreatedMs"
		  FROM jsonb_to_recordset($1::jsonb) AS x("ID" text, "Email" text, "FirstName" text, "LastName" text,
		       "ImageURL" text, "LastSignInMs" bigint, "CreatedMs" bigint)
		ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, first_name = EXCLUDED.first_name,
		   last_name = EXCLUDED.last_name, image_url = EXCLUDED.image_url,
		   last_sign_in_ms = EXCLUDED.last_sign_in_ms, created_ms = EXCLUDED.created_ms, refreshed_at = now()
		RETURNING u.user_id, (xmax = 0)`, string(b))
	if err != nil {
		return nil, fmt.Errorf("cache users: %w", err)
	}
	var fresh []string
	var id string
	var inserted bool
	_, err = pgx.ForEachRow(rows, []any{&id, &inserted}, func() error {
		if inserted {
			fresh = append(fresh, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache users: %w", err)
	}
	return fresh, nil
}
