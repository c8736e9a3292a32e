package team

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/team/store"
)

// InvitationView is an invitation as the REST contract lists it.
type InvitationView struct {
	ID, Email, Status, InvitedBy, InvitedAt string
	TeamRoles                               map[string]string
	CreatedAt                               int64
}

// CreateInvitation invites email through Clerk with team roles. Unlike
// v2.7 (which always failed, and would have let any ADMIN grant any role in
// any team), each role must be one the inviter may grant (authz.CanGrant).
// The roles are stored here too and applied when the user first appears.
func (s *Service) CreateInvitation(ctx context.Context, email string, teamRoles map[string]string) (InvitationView, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return InvitationView{}, err
	}
	if err := authz.Authorize(p, authz.InvitationCreate, authz.Resource{}); err != nil {
		return InvitationView{}, err
	}
	if err := validEmail(email); err != nil {
		return InvitationView{}, err
	}
	roles, err := parseTeamRoles(teamRoles)
	if err != nil {
		return InvitationView{}, err
	}
	teams := make([]string, 0, len(roles))
	for t := range roles {
		teams = append(teams, t)
	}
	slices.Sort(teams)
	exists, err := existingTeams(ctx, s.pool, teams)
	if err != nil {
		return InvitationView{}, err
	}
	// Whether the inviter may grant each role first: a team the inviter has
	// no role in is refused alike whether it exists or not, so that the
	// answer does not tell which team ids exist.
	for _, t := range teams {
		if err := authz.CanGrant(p, t, roles[t], ""); err != nil {
			return InvitationView{}, err
		}
	}
	for _, t := range teams {
		if !exists[t] {
			return InvitationView{}, errs.Invalid("Team does not exist: " + t)
		}
	}
	invitedAt := s.now().UTC().Format("2006-01-02T15:04:05.000000Z")
	plain := make(map[string]string, len(roles))
	for t, r := range roles {
		plain[t] = string(r)
	}
	meta := map[string]any{metaTeamRoles: plain, metaInvitedBy: p.ID, metaInvitedAt: invitedAt}
	inv, err := s.Directory.CreateInvitation(ctx, email, meta, s.InvitationRedirectURL)
	if err != nil {
		return InvitationView{}, err
	}
	err = s.write(ctx, func(tx pgx.Tx) error {
		roles, err := json.Marshal(plain)
		if err != nil {
			return fmt.Errorf("store invitation: %w", err)
		}
		if err := teamdb.InsertInvitation(ctx, tx, store.InsertInvitationParams{ID: inv.ID, Email: email, TeamRoles: roles, InvitedBy: p.ID}); err != nil {
			return fmt.Errorf("store invitation: %w", err)
		}
		changes, err := invitationChanges(ctx, tx, "create", inv.ID, email, plain, map[string]any{"email": email})
		if err != nil {
			return err
		}
		return audit(ctx, tx, changes...)
	})
	if err != nil {
		// Do not leave an invitation whose roles would never be applied.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := s.Directory.RevokeInvitation(rctx, inv.ID); rerr != nil {
			s.Log.ErrorContext(ctx, "invitation created in Clerk but not stored; revoking it failed too", "invitation_id", inv.ID, "error", rerr)
		}
		return InvitationView{}, err
	}
	return InvitationView{ID: inv.ID, Email: email, Status: "pending", TeamRoles: plain, InvitedBy: p.ID, InvitedAt: invitedAt, CreatedAt: inv.CreatedAt}, nil
}

// invitationChanges are the audit events of one change (create, accept,
// revoke) to invitation id, whose team roles are roles; name names it in
// the trail (the invitee's e-mail, else its id) and base holds the other
// details common to every event (the e-mail, the user).
//
// An invitation grants roles in the teams it names, and the trail is read
// team by team: a team ADMIN sees the events whose team_id is one of their
// teams, a global ADMIN sees all. So the change is recorded as one event per
// team named, with team_id = that team and only that team's role in
// team_roles. One event under the first (or only) team would hide an
// invitation into a second team from that team's ADMINs; one event listing
// every team would show one team's readers the roles granted in the others,
// which read scoping exists to prevent. The events of one change share the
// entity id and request id, so a global ADMIN can put the invitation back
// together; team_count says how many teams it names, without naming them.
// An invitation that names no team grants nothing in any team: it is one
// event with no team (visible to global ADMINs and core-team, like the other
// team-less events).
func invitationChanges(ctx context.Context, q store.DBTX, action, id, name string, roles map[string]string, base map[string]any) ([]auditlog.Change, error) {
	if name == "" {
		name = id
	}
	details := func(teamRoles map[string]any) map[string]any {
		d := make(map[string]any, len(base)+3)
		for k, v := range base {
			d[k] = v
		}
		d["name"], d["team_roles"], d["team_count"] = name, teamRoles, len(roles)
		return d
	}
	if len(roles) == 0 {
		return []auditlog.Change{{Action: action, EntityType: "invitation", EntityID: id, Details: details(map[string]any{})}}, nil
	}
	teams := slices.Sorted(maps.Keys(roles))
	names, err := teamNames(ctx, q, teams)
	if err != nil {
		return nil, err
	}
	var out []auditlog.Change
	for _, t := range teams {
		d := details(map[string]any{t: roles[t]})
		d["team_id"], d["team_name"] = t, names[t]
		out = append(out, auditlog.Change{Action: action, EntityType: "invitation", EntityID: id, Team: t, Details: d})
	}
	return out, nil
}

// ListInvitations returns every Clerk invitation, any status.
func (s *Service) ListInvitations(ctx context.Context) ([]InvitationView, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := authz.Authorize(p, authz.InvitationList, authz.Resource{}); err != nil {
		return nil, err
	}
	invs, err := s.Directory.AllInvitations(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]InvitationView, 0, len(invs))
	for _, inv := range invs {
		v := InvitationView{ID: inv.ID, Email: inv.EmailAddress, Status: inv.Status, CreatedAt: inv.CreatedAt, TeamRoles: map[string]string{}}
		if v.Status == "" && inv.Revoked {
			v.Status = "revoked"
		}
		var meta map[string]any
		_ = json.Unmarshal(inv.PublicMetadata, &meta) // not an object: no roles
		if roles, ok := meta[metaTeamRoles].(map[string]any); ok {
			for t, r := range roles {
				if rs, ok := r.(string); ok {
					v.TeamRoles[t] = rs
				}
			}
		}
		v.InvitedBy, _ = meta[metaInvitedBy].(string)
		v.InvitedAt, _ = meta[metaInvitedAt].(string)
		out = append(out, v)
	}
	return out, nil
}

// RevokeInvitation revokes a pending invitation: a global ADMIN any, an
// inviter their own.
func (s *Service) RevokeInvitation(ctx context.Context, id string) error {
	p, err := auth.Caller(ctx)
	if err != nil {
		return err
	}
	if !opaqueIDPattern.MatchString(id) {
		return errs.Invalid("Invalid invitation id")
	}
	if err := authz.Authorize(p, authz.InvitationAdmin, authz.Resource{}); err != nil {
		invitedBy, qerr := teamdb.InvitationInviter(ctx, s.pool, id)
		if qerr != nil && !errors.Is(qerr, pgx.ErrNoRows) {
			return qerr
		}
		if invitedBy == "" || invitedBy != p.ID || p.Kind == auth.KindService {
			return err
		}
	}
	if err := s.Directory.RevokeInvitation(ctx, id); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx) error {
		if err := teamdb.MarkInvitationRevoked(ctx, tx, id); err != nil {
			return fmt.Errorf("mark invitation revoked: %w", err)
		}
		inv, err := teamdb.Invitation(ctx, tx, id)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Made in Clerk directly, not through Token Manager (a global
			// ADMIN may revoke any): its e-mail and roles are not known
			// here, and asking Clerk for them is not worth failing over.
			changes, err := invitationChanges(ctx, tx, "revoke", id, "", nil, map[string]any{"untracked": true})
			if err != nil {
				return err
			}
			return audit(ctx, tx, changes...)
		case err != nil:
			return fmt.Errorf("read invitation: %w", err)
		}
		roles, err := decodeTeamRoles(inv.TeamRoles)
		if err != nil {
			return fmt.Errorf("read invitation: %w", err)
		}
		changes, err := invitationChanges(ctx, tx, "revoke", id, inv.Email, roles, map[string]any{"email": inv.Email})
		if err != nil {
			return err
		}
		return audit(ctx, tx, changes...)
	})
}
