package team

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/team/store"
)

// ListTeams returns the teams the caller may read: all for a global ADMIN,
// else those the caller has a role in (v2.7 showed every team to anyone).
func (s *Service) ListTeams(ctx context.Context) ([]TeamWithCount, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	all, ids := authz.ReadScope(p)
	if p.Kind == auth.KindService {
		return nil, errs.Forbidden("Permission denied: services act only through internal methods")
	}
	rows, err := teamdb.ListTeams(ctx, s.pool, store.ListTeamsParams{AllTeams: all, Ids: ids})
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	out := make([]TeamWithCount, len(rows))
	for i, r := range rows {
		out[i] = teamOf(store.GetTeamRow(r))
	}
	return out, nil
}

// GetTeam returns one team the caller may read.
func (s *Service) GetTeam(ctx context.Context, id string) (TeamWithCount, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return TeamWithCount{}, err
	}
	if err := teamRef(id); err != nil {
		return TeamWithCount{}, err
	}
	if err := authz.Authorize(p, authz.TeamRead, authz.Resource{Team: id}); err != nil {
		return TeamWithCount{}, err
	}
	return getTeam(ctx, s.pool, id, false)
}

// NewTeam is what CreateTeam needs; nil optional fields take defaults.
type NewTeam struct {
	ID, Name                 string
	Description, Color, Icon *string
}

// insertTeam creates a team; a taken id, or the id of a deleted team, is a
// Conflict.
func insertTeam(ctx context.Context, q store.DBTX, t Team) error {
	n, err := teamdb.InsertTeam(ctx, q, store.InsertTeamParams{ID: t.ID, Name: t.Name, Description: t.Description,
		Color: t.Color, Icon: t.Icon, CreatedBy: t.CreatedBy})
	if err == nil && n == 0 {
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

// CreateTeam creates a team and makes the creator its ADMIN (an admin key
// gets the ADMIN role on itself), so nobody has to "claim" it.
func (s *Service) CreateTeam(ctx context.Context, in NewTeam) (TeamWithCount, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return TeamWithCount{}, err
	}
	if err := authz.Authorize(p, authz.TeamCreate, authz.Resource{}); err != nil {
		return TeamWithCount{}, err
	}
	t := Team{ID: in.ID, Name: in.Name, Description: "", Color: "#3b82f6", Icon: "", CreatedBy: p.ID}
	if in.Description != nil {
		t.Description = *in.Description
	}
	if in.Color != nil {
		t.Color = *in.Color
	}
	if in.Icon != nil {
		t.Icon = *in.Icon
	}
	for _, err := range []error{validTeamID(t.ID), validTeamName(t.Name), validDescription(t.Description), validColor(t.Color), validIcon(t.Icon)} {
		if err != nil {
			return TeamWithCount{}, err
		}
	}
	var out TeamWithCount
	err = s.write(ctx, func(tx pgx.Tx) error {
		if err := insertTeam(ctx, tx, t); err != nil {
			return err
		}
		switch p.Kind {
		case auth.KindUser:
			if err := upsertMembership(ctx, tx, p.ID, t.ID, auth.RoleAdmin, p.ID); err != nil {
				return err
			}
			// The creator's ADMIN role is a grant like any other: the
			// trail must answer "since when is X an ADMIN of Y".
			d := teamDetails(principalName(p), t)
			d["user_id"], d["role"], d["previous_role"] = p.ID, string(auth.RoleAdmin), ""
			if err := audit(ctx, tx, auditlog.Change{Action: "create", EntityType: "membership", EntityID: p.ID + "@" + t.ID, Team: t.ID,
				Details: d}); err != nil {
				return err
			}
			if err := mirror(ctx, tx, p.ID); err != nil {
				return err
			}
		case auth.KindAdminKey:
			// A global-ADMIN key already governs every team and gets no
			// role. Any other key may create a team only because it is an
			// ADMIN somewhere (authz.TeamCreate), and it is given ADMIN in
			// the new team so it can manage what it made: a grant like the
			// user creator's, audited the same way in the team's trail.
			// Keys are not members (the team's member list shows people),
			// so the entity is admin_key_role, keyed like a membership.
			if !p.IsGlobalAdmin() {
				if err := teamdb.GrantCreatorKey(ctx, tx, store.GrantCreatorKeyParams{KeyID: p.ID, TeamID: t.ID}); err != nil {
					return fmt.Errorf("grant creator key: %w", err)
				}
				d := teamDetails(principalName(p), t)
				d["admin_key_id"], d["role"], d["previous_role"] = p.ID, string(auth.RoleAdmin), ""
				if err := audit(ctx, tx, auditlog.Change{Action: "create", EntityType: "admin_key_role", EntityID: p.ID + "@" + t.ID, Team: t.ID,
					Details: d}); err != nil {
					return err
				}
			}
		}
		d := teamDetails(t.Name, t)
		d["description"], d["color"], d["icon"] = t.Description, t.Color, t.Icon
		if err := audit(ctx, tx, auditlog.Change{Action: "create", EntityType: "team", EntityID: t.ID, Team: t.ID, Details: d}); err != nil {
			return err
		}
		out, err = getTeam(ctx, tx, t.ID, false)
		return err
	})
	return out, err
}

// UpdateTeam changes a team's fields; only its ADMIN (or a global ADMIN)
// may. There is no "claim" of member-less teams any more.
func (s *Service) UpdateTeam(ctx context.Context, id string, patch TeamPatch) (TeamWithCount, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return TeamWithCount{}, err
	}
	if err := teamRef(id); err != nil {
		return TeamWithCount{}, err
	}
	if err := authz.Authorize(p, authz.TeamUpdate, authz.Resource{Team: id}); err != nil {
		return TeamWithCount{}, err
	}
	if patch == (TeamPatch{}) {
		return TeamWithCount{}, errs.Invalid("No fields to update")
	}
	checks := []struct {
		v     *string
		check func(string) error
	}{{patch.Name, validTeamName}, {patch.Description, validDescription}, {patch.Color, validColor}, {patch.Icon, validIcon}}
	for _, c := range checks {
		if c.v == nil {
			continue
		}
		if err := c.check(*c.v); err != nil {
			return TeamWithCount{}, err
		}
	}
	var out TeamWithCount
	err = s.write(ctx, func(tx pgx.Tx) error {
		before, err := getTeam(ctx, tx, id, true)
		if err != nil {
			return err
		}
		n, err := teamdb.UpdateTeam(ctx, tx, store.UpdateTeamParams{ID: id, Name: patch.Name, Description: patch.Description,
			Color: patch.Color, Icon: patch.Icon})
		if err != nil {
			return fmt.Errorf("update team: %w", err)
		}
		if n == 0 {
			return errs.NotFound("Team not found")
		}
		if out, err = getTeam(ctx, tx, id, false); err != nil {
			return err
		}
		// The dashboard's keys hold the team after the update; changes
		// holds the before/after of each field that changed.
		changes := map[string]any{}
		for _, f := range []struct{ name, from, to string }{{"name", before.Name, out.Name},
			{"description", before.Description, out.Description}, {"color", before.Color, out.Color}, {"icon", before.Icon, out.Icon}} {
			if f.from != f.to {
				changes[f.name] = map[string]any{"from": f.from, "to": f.to}
			}
		}
		d := teamDetails(out.Name, out.Team)
		d["changes"] = changes
		return audit(ctx, tx, auditlog.Change{Action: "update", EntityType: "team", EntityID: id, Team: id, Details: d})
	})
	return out, err
}

// DeleteTeam deletes a team that has no members (but the caller) and no
// tokens. v2.7 cascaded to the team's tokens and left them alive in KV; here
// the token service is asked first, and when it cannot answer the delete is
// refused rather than risked.
func (s *Service) DeleteTeam(ctx context.Context, id string) error {
	p, err := auth.Caller(ctx)
	if err != nil {
		return err
	}
	if err := teamRef(id); err != nil {
		return err
	}
	if err := authz.Authorize(p, authz.TeamDelete, authz.Resource{Team: id}); err != nil {
		return err
	}
	if id == authz.CoreTeam {
		return errs.Precondition("core-team cannot be deleted: it governs route management")
	}
	if _, err := getTeam(ctx, s.pool, id, false); err != nil {
		return err
	}
	if s.Tokens == nil {
		return errs.Unavailable("cannot verify the team has no tokens")
	}
	return s.write(ctx, func(tx pgx.Tx) error {
		gone, err := getTeam(ctx, tx, id, true)
		if err != nil {
			return err
		}
		members, err := teamdb.CountMembersBesides(ctx, tx, store.CountMembersBesidesParams{TeamID: id, UserID: p.ID})
		if err != nil {
			return fmt.Errorf("count members: %w", err)
		}
		if members.Others > 0 {
			return errs.Precondition(fmt.Sprintf("Cannot delete team with %d members. Please remove all members first.", members.Others))
		}
		keys, err := teamdb.CountLiveKeyRolesBesides(ctx, tx, store.CountLiveKeyRolesBesidesParams{TeamID: id, KeyID: p.ID})
		if err != nil {
			return fmt.Errorf("count key roles: %w", err)
		}
		if keys > 0 {
			return errs.Precondition(fmt.Sprintf("Cannot delete team: %d admin keys have roles in it. Revoke them first.", keys))
		}
		// The token service retires the id while the team row is locked
		// here: it refuses if the team owns live tokens, and from then on
		// refuses to create any, in one transaction of its own that
		// CreateToken serialises with. If this transaction then fails, the
		// team stays, without tokens and unable to get new ones, until the
		// deletion is retried (RetireTeam is idempotent).
		if err := s.Tokens.RetireTeam(ctx, id); err != nil {
			if status.Code(err) == codes.FailedPrecondition {
				return err
			}
			return errs.Wrap(err, errs.ErrUnavailable, "cannot verify the team has no tokens")
		}
		// What is left: the calling key's own role (a key that created the
		// team) and roles of revoked keys. The caller's removal is a change
		// like the caller's membership below, and is audited as such; a
		// revoked key's roles ended, in the trail, when it was revoked.
		removed, err := teamdb.DeleteTeamKeyRoles(ctx, tx, id)
		if err != nil {
			return fmt.Errorf("delete key roles: %w", err)
		}
		for _, r := range removed {
			if r.Revoked {
				continue
			}
			d := teamDetails(r.Name, gone.Team)
			d["admin_key_id"], d["previous_role"] = r.KeyID, r.Role
			if err := audit(ctx, tx, auditlog.Change{Action: "delete", EntityType: "admin_key_role", EntityID: r.KeyID + "@" + id, Team: id,
				Details: d}); err != nil {
				return err
			}
		}
		if members.UserMember > 0 {
			previous, err := membership(ctx, tx, p.ID, id)
			if err != nil {
				return err
			}
			if err := deleteMembership(ctx, tx, p.ID, id); err != nil {
				return err
			}
			d, err := membershipDetails(ctx, tx, p.ID, gone.Team, "", previous)
			if err != nil {
				return err
			}
			if err := audit(ctx, tx, auditlog.Change{Action: "delete", EntityType: "membership", EntityID: p.ID + "@" + id, Team: id,
				Details: d}); err != nil {
				return err
			}
			if err := mirror(ctx, tx, p.ID); err != nil {
				return err
			}
		}
		if err := teamdb.DeleteTeam(ctx, tx, store.DeleteTeamParams{ID: id, DeletedBy: p.ID}); err != nil {
			return fmt.Errorf("delete team: %w", err)
		}
		return audit(ctx, tx, auditlog.Change{Action: "delete", EntityType: "team", EntityID: id, Team: id, Details: teamDetails(gone.Name, gone.Team)})
	})
}

// TeamsByID returns the teams with the given ids (unknown ids are skipped),
// for other services (the server checks that the caller is one).
func (s *Service) TeamsByID(ctx context.Context, ids []string) ([]Team, error) {
	return teamsByID(ctx, s.pool, ids)
}

// CountTeams returns how many teams exist, for other services (the server
// checks that the caller is one).
func (s *Service) CountTeams(ctx context.Context) (int64, error) {
	n, err := teamdb.CountTeams(ctx, s.pool)
	if err != nil {
		return 0, fmt.Errorf("count teams: %w", err)
	}
	return n, nil
}

// ListTeamMembers returns a team's members with what Clerk knows of them.
func (s *Service) ListTeamMembers(ctx context.Context, id string) ([]Member, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := teamRef(id); err != nil {
		return nil, err
	}
	if err := authz.Authorize(p, authz.TeamRead, authz.Resource{Team: id}); err != nil {
		return nil, err
	}
	if _, err := getTeam(ctx, s.pool, id, false); err != nil {
		return nil, err
	}
	members, err := teamMembers(ctx, s.pool, id)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, m := range members {
		if !m.Cached || s.now().Sub(m.RefreshedAt) > s.UserTTL {
			stale = append(stale, m.UserID)
		}
	}
	if len(stale) > 0 && s.Directory != nil {
		// Best effort: a member list with stale names beats no list.
		if err := s.refreshUsers(ctx, stale); err != nil {
			s.Log.WarnContext(ctx, "could not refresh member profiles from Clerk", "error", err)
		} else if members, err = teamMembers(ctx, s.pool, id); err != nil {
			return nil, err
		}
	}
	return members, nil
}
