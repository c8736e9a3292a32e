package team

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/team/store"
)

// teamdb is the team service's SQL (package store). Its queries take the
// connection: the pool, or the transaction of a use case.
var teamdb = store.New()

// This file holds the domain forms of the store's rows and the reads and
// writes that several use cases share; the use cases call teamdb directly
// for the rest.

// Team is a row of team.teams.
type Team struct {
	ID, Name, Description, Color, Icon, CreatedBy string
	CreatedAt, UpdatedAt                          time.Time
}

// TeamWithCount is a team and how many people are in it.
type TeamWithCount struct {
	Team
	MemberCount int64
}

// teamOf is the domain form of a team row (GetTeam's; LockTeam's and
// ListTeams' rows convert to it).
func teamOf(r store.GetTeamRow) TeamWithCount {
	return TeamWithCount{Team: Team{ID: r.ID, Name: r.Name, Description: r.Description, Color: r.Color, Icon: r.Icon,
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}, MemberCount: r.MemberCount}
}

// getTeam returns one team; lock takes a row lock that serializes the
// membership changes of the team (last-ADMIN checks) and its deletion.
func getTeam(ctx context.Context, q store.DBTX, id string, lock bool) (TeamWithCount, error) {
	var row store.GetTeamRow
	var err error
	if lock {
		var locked store.LockTeamRow
		locked, err = teamdb.LockTeam(ctx, q, id)
		row = store.GetTeamRow(locked)
	} else {
		row, err = teamdb.GetTeam(ctx, q, id)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return TeamWithCount{}, errs.NotFound("Team not found")
	}
	if err != nil {
		return TeamWithCount{}, fmt.Errorf("get team: %w", err)
	}
	return teamOf(row), nil
}

// teamsByID returns the teams with the given ids (unknown ids are skipped).
func teamsByID(ctx context.Context, q store.DBTX, ids []string) ([]Team, error) {
	rows, err := teamdb.TeamsByID(ctx, q, ids)
	if err != nil {
		return nil, fmt.Errorf("load teams: %w", err)
	}
	out := make([]Team, len(rows))
	for i, r := range rows {
		out[i] = Team{ID: r.ID, Name: r.Name, Description: r.Description, Color: r.Color, Icon: r.Icon,
			CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	}
	return out, nil
}

// existingTeams returns which of ids are teams.
func existingTeams(ctx context.Context, q store.DBTX, ids []string) (map[string]bool, error) {
	found, err := teamdb.ExistingTeams(ctx, q, ids)
	if err != nil {
		return nil, fmt.Errorf("check teams: %w", err)
	}
	out := make(map[string]bool, len(found))
	for _, id := range found {
		out[id] = true
	}
	return out, nil
}

// membership returns user's role in team, "" when not a member.
func membership(ctx context.Context, q store.DBTX, user, team string) (auth.Role, error) {
	role, err := teamdb.Membership(ctx, q, store.MembershipParams{UserID: user, TeamID: team})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("load membership: %w", err)
	}
	return auth.Role(role), nil
}

// upsertMembership gives user role in team.
func upsertMembership(ctx context.Context, q store.DBTX, user, team string, role auth.Role, by string) error {
	err := teamdb.UpsertMembership(ctx, q, store.UpsertMembershipParams{UserID: user, TeamID: team, Role: string(role), CreatedBy: by})
	if err != nil {
		return fmt.Errorf("upsert membership: %w", err)
	}
	return nil
}

// addMembershipIfAbsent gives user role in team unless they already have
// one there; it reports whether it added.
func addMembershipIfAbsent(ctx context.Context, q store.DBTX, user, team string, role auth.Role, by string) (bool, error) {
	n, err := teamdb.AddMembershipIfAbsent(ctx, q, store.AddMembershipIfAbsentParams{UserID: user, TeamID: team, Role: string(role), CreatedBy: by})
	if err != nil {
		return false, fmt.Errorf("add membership: %w", err)
	}
	return n == 1, nil
}

// deleteMembership removes user from team.
func deleteMembership(ctx context.Context, q store.DBTX, user, team string) error {
	if err := teamdb.DeleteMembership(ctx, q, store.DeleteMembershipParams{UserID: user, TeamID: team}); err != nil {
		return fmt.Errorf("delete membership: %w", err)
	}
	return nil
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

// int64Ptr is a nullable bigint as a pointer.
func int64Ptr(v pgtype.Int8) *int64 {
	if !v.Valid {
		return nil
	}
	return &v.Int64
}

// cachedUser returns the cached profile of user, if any.
func cachedUser(ctx context.Context, q store.DBTX, user string) (CachedUser, bool, error) {
	r, err := teamdb.CachedUser(ctx, q, user)
	if errors.Is(err, pgx.ErrNoRows) {
		return CachedUser{ID: user}, false, nil
	}
	if err != nil {
		return CachedUser{ID: user}, false, fmt.Errorf("load cached user: %w", err)
	}
	return CachedUser{ID: user, Email: r.Email, FirstName: r.FirstName, LastName: r.LastName, ImageURL: r.ImageUrl,
		LastSignInMs: int64Ptr(r.LastSignInMs), CreatedMs: r.CreatedMs, RefreshedAt: r.RefreshedAt}, true, nil
}

// upsertUsers refreshes the cache with users and returns the ids that it
// had never seen before.
func upsertUsers(ctx context.Context, q store.DBTX, users []CachedUser) ([]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(users) // the field names are those queries/users.sql reads
	if err != nil {
		return nil, err
	}
	rows, err := teamdb.UpsertUsers(ctx, q, b)
	if err != nil {
		return nil, fmt.Errorf("cache users: %w", err)
	}
	var fresh []string
	for _, r := range rows {
		if r.Inserted {
			fresh = append(fresh, r.UserID)
		}
	}
	return fresh, nil
}

// Member is a membership with what the users cache knows of the person.
type Member struct {
	UserID string
	Role   auth.Role
	CachedUser
	Cached bool
}

// teamMembers returns the members of team, highest role first.
func teamMembers(ctx context.Context, q store.DBTX, team string) ([]Member, error) {
	rows, err := teamdb.TeamMembers(ctx, q, team)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	out := make([]Member, len(rows))
	for i, r := range rows {
		out[i] = Member{UserID: r.UserID, Role: auth.Role(r.Role), Cached: r.Cached, CachedUser: CachedUser{ID: r.UserID,
			Email: r.Email, FirstName: r.FirstName, LastName: r.LastName, ImageURL: r.ImageUrl,
			LastSignInMs: int64Ptr(r.LastSignInMs), CreatedMs: r.CreatedMs, RefreshedAt: r.RefreshedAt}}
	}
	return out, nil
}

// userPrincipal returns the roles of a Clerk user. A signed-in user with
// no roles is still a principal (any signed-in user may read routes).
func userPrincipal(ctx context.Context, q store.DBTX, userID string) (*auth.Principal, error) {
	p := &auth.Principal{Kind: auth.KindUser, ID: userID, TeamRoles: map[string]auth.Role{}}
	rows, err := teamdb.UserMemberships(ctx, q, userID)
	if err != nil {
		return nil, fmt.Errorf("load memberships: %w", err)
	}
	for _, r := range rows {
		p.TeamRoles[r.TeamID] = auth.Role(r.Role)
	}
	global, err := teamdb.GlobalRole(ctx, q, userID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("load global role: %w", err)
	default:
		p.GlobalRole = auth.Role(global)
	}
	return p, nil
}

// adminKeyPrincipal returns the principal of a live admin key by the hash
// of the key, and marks it used (at most once a minute, to keep reads
// cheap). A revoked or unknown key is NotFound.
func adminKeyPrincipal(ctx context.Context, q store.DBTX, keyHash string) (*auth.Principal, error) {
	k, err := teamdb.AdminKeyPrincipal(ctx, q, keyHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errs.NotFound("admin key not found")
	}
	if err != nil {
		return nil, fmt.Errorf("load admin key: %w", err)
	}
	p := &auth.Principal{Kind: auth.KindAdminKey, ID: k.ID, Name: k.Name, GlobalRole: auth.Role(k.GlobalRole), TeamRoles: map[string]auth.Role{}}
	rows, err := teamdb.AdminKeyRoles(ctx, q, p.ID)
	if err != nil {
		return nil, fmt.Errorf("load admin key roles: %w", err)
	}
	for _, r := range rows {
		p.TeamRoles[r.TeamID] = auth.Role(r.Role)
	}
	return p, nil
}

// rolesOfUsers returns the team roles and global roles of users.
func rolesOfUsers(ctx context.Context, q store.DBTX, users []string) (map[string]map[string]auth.Role, map[string]auth.Role, error) {
	rows, err := teamdb.MembershipsOfUsers(ctx, q, users)
	if err != nil {
		return nil, nil, fmt.Errorf("load roles: %w", err)
	}
	team := map[string]map[string]auth.Role{}
	for _, r := range rows {
		if team[r.UserID] == nil {
			team[r.UserID] = map[string]auth.Role{}
		}
		team[r.UserID][r.TeamID] = auth.Role(r.Role)
	}
	globals, err := teamdb.GlobalRolesOfUsers(ctx, q, users)
	if err != nil {
		return nil, nil, fmt.Errorf("load global roles: %w", err)
	}
	global := map[string]auth.Role{}
	for _, r := range globals {
		global[r.UserID] = auth.Role(r.Role)
	}
	return team, global, nil
}

// decodeTeamRoles decodes a JSON object of team id to role (team_roles of the
// store's admin key and invitation rows).
func decodeTeamRoles(b []byte) (map[string]string, error) {
	var roles map[string]string
	if err := json.Unmarshal(b, &roles); err != nil {
		return nil, fmt.Errorf("decode team roles: %w", err)
	}
	return roles, nil
}
