package team

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/team/store"
)

// SetRole gives user role in team (an upsert, as v2.7's both "set role"
// and "add membership" were). The caller must be allowed to grant role and
// to change the user's current role (authz.CanGrant); a team's last ADMIN
// cannot be demoted. It returns the previous role ("" if none).
func (s *Service) SetRole(ctx context.Context, userID, team, roleName string) (auth.Role, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return "", err
	}
	if err := userRef(userID); err != nil {
		return "", err
	}
	if err := teamRef(team); err != nil {
		return "", err
	}
	role, err := auth.ParseRole(roleName)
	if err != nil {
		return "", errs.Invalid("Invalid role: " + truncate(roleName, 20))
	}
	// Refuse callers without any management right before saying whether
	// the team exists.
	if err := authz.Authorize(p, authz.MembersManage, authz.Resource{Team: team}); err != nil {
		return "", err
	}
	var previous auth.Role
	err = s.write(ctx, func(tx pgx.Tx) error {
		t, err := getTeam(ctx, tx, team, true)
		if err != nil {
			return err
		}
		current, err := membership(ctx, tx, userID, team)
		if err != nil {
			return err
		}
		previous = current
		if err := authz.CanGrant(p, team, role, current); err != nil {
			return err
		}
		if current == role {
			return nil // nothing changes: no audit event, no mirror
		}
		if current == auth.RoleAdmin {
			if err := notLastAdmin(ctx, tx, team, "demote"); err != nil {
				return err
			}
		}
		if err := upsertMembership(ctx, tx, userID, team, role, p.ID); err != nil {
			return err
		}
		action := "update"
		if current == "" {
			action = "create"
		}
		d, err := membershipDetails(ctx, tx, userID, t.Team, role, current)
		if err != nil {
			return err
		}
		if err := audit(ctx, tx, auditlog.Change{Action: action, EntityType: "membership", EntityID: userID + "@" + team, Team: team,
			Details: d}); err != nil {
			return err
		}
		return mirror(ctx, tx, userID)
	})
	return previous, err
}

// RemoveMember removes user from team; a MANAGER may remove only
// DEVELOPERs and VIEWERs, and nobody may remove the last ADMIN.
func (s *Service) RemoveMember(ctx context.Context, userID, team string) error {
	p, err := auth.Caller(ctx)
	if err != nil {
		return err
	}
	if err := userRef(userID); err != nil {
		return err
	}
	if err := teamRef(team); err != nil {
		return err
	}
	if err := authz.Authorize(p, authz.MembersManage, authz.Resource{Team: team}); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx) error {
		t, err := getTeam(ctx, tx, team, true)
		if err != nil {
			return err
		}
		current, err := membership(ctx, tx, userID, team)
		if err != nil {
			return err
		}
		if current == "" {
			return errs.NotFound("User is not a member of team: " + team)
		}
		if err := authz.CanGrant(p, team, "", current); err != nil {
			if p.RoleIn(team) == auth.RoleManager {
				return errs.Forbidden("MANAGER cannot remove users with ADMIN or MANAGER role")
			}
			return err
		}
		if current == auth.RoleAdmin {
			if err := notLastAdmin(ctx, tx, team, "remove"); err != nil {
				return err
			}
		}
		if err := deleteMembership(ctx, tx, userID, team); err != nil {
			return err
		}
		d, err := membershipDetails(ctx, tx, userID, t.Team, "", current)
		if err != nil {
			return err
		}
		if err := audit(ctx, tx, auditlog.Change{Action: "delete", EntityType: "membership", EntityID: userID + "@" + team, Team: team,
			Details: d}); err != nil {
			return err
		}
		return mirror(ctx, tx, userID)
	})
}

// notLastAdmin refuses to take away the only ADMIN of team (the team row is
// locked, so two concurrent demotions cannot both pass).
func notLastAdmin(ctx context.Context, q store.DBTX, team, verb string) error {
	n, err := teamdb.CountAdmins(ctx, q, team)
	if err != nil {
		return fmt.Errorf("count admins: %w", err)
	}
	if n <= 1 {
		return errs.Precondition(fmt.Sprintf("Cannot %s the last ADMIN of team: %s", verb, team))
	}
	return nil
}
