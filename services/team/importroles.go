package team

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/team/store"
)

// ImportResult says what ImportClerkRoles did (or would do).
type ImportResult struct {
	UsersSeen, MembershipsImported, GlobalAdminsImported int64
	// Skipped explains each role that was not imported.
	Skipped []string
}

// errDryRun rolls back the import transaction of a dry run.
var errDryRun = errors.New("dry run")

// ImportClerkRoles copies the roles that v2.7 kept in Clerk publicMetadata
// (tokenManager:teamRoles, tokenManager:globalRole) into PostgreSQL, once,
// when moving over. Roles already in PostgreSQL win: the import only adds
// what is missing, so running it again changes nothing. Roles in teams that
// do not exist and unknown role names are skipped and reported. A dry run
// does the same work in a transaction it rolls back.
//
// It is the logic behind both the ImportClerkRoles RPC and
// "tmctl import-roles", which runs it directly against the database.
func ImportClerkRoles(ctx context.Context, pool *pgxpool.Pool, dir *Directory, dryRun bool) (ImportResult, error) {
	users, err := dir.AllUsers(ctx)
	if err != nil {
		return ImportResult{}, err
	}
	var res ImportResult
	err = db.InTx(ctx, pool, func(tx pgx.Tx) error {
		res = ImportResult{UsersSeen: int64(len(users))}
		var changed []string
		for _, u := range users {
			n, g, skipped, err := importUser(ctx, tx, u)
			if err != nil {
				return err
			}
			res.MembershipsImported += n
			res.GlobalAdminsImported += g
			res.Skipped = append(res.Skipped, skipped...)
			if n+g > 0 {
				changed = append(changed, u.ID)
			}
		}
		slices.Sort(res.Skipped)
		if dryRun {
			return errDryRun
		}
		if err := mirror(ctx, tx, changed...); err != nil {
			return err
		}
		return audit(ctx, tx, auditlog.Change{Action: "import", EntityType: "roles", Details: map[string]any{
			"name": "roles imported from Clerk", "users_seen": res.UsersSeen, "memberships_imported": res.MembershipsImported,
			"global_admins_imported": res.GlobalAdminsImported, "skipped": len(res.Skipped)}})
	})
	if errors.Is(err, errDryRun) {
		err = nil
	}
	return res, err
}

func importUser(ctx context.Context, tx pgx.Tx, u *clerk.User) (memberships, globals int64, skipped []string, err error) {
	var meta map[string]any
	if len(u.PublicMetadata) > 0 {
		if json.Unmarshal(u.PublicMetadata, &meta) != nil {
			return 0, 0, []string{u.ID + ": publicMetadata is not an object"}, nil
		}
	}
	if roles, ok := meta[metaTeamRoles].(map[string]any); ok {
		teams := make([]string, 0, len(roles))
		for t := range roles {
			teams = append(teams, t)
		}
		slices.Sort(teams)
		exists, err := existingTeams(ctx, tx, teams)
		if err != nil {
			return 0, 0, nil, err
		}
		for _, t := range teams {
			rs, _ := roles[t].(string)
			role, rerr := auth.ParseRole(rs)
			switch {
			case roles[t] == nil:
				continue // a removed membership (v2.7 wrote nulls)
			case rerr != nil:
				skipped = append(skipped, fmt.Sprintf("%s: invalid role %q in team %s", u.ID, truncate(rs, 20), truncate(t, maxTeamID)))
				continue
			case !exists[t]:
				skipped = append(skipped, fmt.Sprintf("%s: team %s does not exist", u.ID, truncate(t, maxTeamID)))
				continue
			}
			added, err := addMembershipIfAbsent(ctx, tx, u.ID, t, role, "import")
			if err != nil {
				return 0, 0, nil, err
			}
			if added {
				memberships++
			}
		}
	}
	if g, _ := meta[metaGlobalRole].(string); g == string(auth.RoleAdmin) {
		n, err := teamdb.GrantGlobalAdmin(ctx, tx, store.GrantGlobalAdminParams{UserID: u.ID, GrantedBy: "import"})
		if err != nil {
			return 0, 0, nil, fmt.Errorf("import global role: %w", err)
		}
		globals = n
	} else if g != "" {
		skipped = append(skipped, fmt.Sprintf("%s: global role %q is not ADMIN", u.ID, truncate(g, 20)))
	}
	return memberships, globals, skipped, nil
}
