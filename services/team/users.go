package team

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/team/store"
)

// Keys of Clerk publicMetadata this system owns (contract §5.2).
const (
	metaNamespace  = "tokenManager:"
	metaTeamRoles  = "tokenManager:teamRoles"
	metaGlobalRole = "tokenManager:globalRole"
	metaInvitedBy  = "tokenManager:invitedBy"
	metaInvitedAt  = "tokenManager:invitedAt"
)

// invitationValidity is how long after its creation an invitation's roles
// may still be applied (Clerk's invitations expire after 30 days too).
const invitationValidity = 30 * 24 * time.Hour

func (s *Service) now() time.Time { return time.Now() }

// UserView is a Clerk user with roles from PostgreSQL, as ListUsers shows it.
type UserView struct {
	CachedUser
	PublicMetadata map[string]any
}

// ListUsers returns every Clerk user (paging through all of them), with
// the roles of PostgreSQL written into publicMetadata so the dashboard shows
// the truth even before the Clerk mirror has caught up.
func (s *Service) ListUsers(ctx context.Context) ([]UserView, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := authz.Authorize(p, authz.UserList, authz.Resource{}); err != nil {
		return nil, err
	}
	users, err := s.Directory.AllUsers(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.ingestUsers(ctx, users); err != nil {
		return nil, err
	}
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	teamRoles, globalRoles, err := rolesOfUsers(ctx, s.pool, ids)
	if err != nil {
		return nil, err
	}
	// A team MANAGER or ADMIN sees the people of the teams they manage, with
	// their roles in those teams only; a global ADMIN sees everyone.
	managed := map[string]bool{}
	for t, r := range p.TeamRoles {
		managed[t] = r.AtLeast(auth.RoleManager)
	}
	out := make([]UserView, 0, len(users))
	for _, u := range users {
		if !p.IsGlobalAdmin() {
			visible := map[string]auth.Role{}
			for t, r := range teamRoles[u.ID] {
				if managed[t] {
					visible[t] = r
				}
			}
			if len(visible) == 0 {
				continue
			}
			teamRoles[u.ID] = visible
			delete(globalRoles, u.ID)
		}
		meta := map[string]any{}
		if len(u.PublicMetadata) > 0 {
			_ = json.Unmarshal(u.PublicMetadata, &meta) // not an object: start afresh
		}
		if meta == nil {
			meta = map[string]any{}
		}
		if !p.IsGlobalAdmin() {
			// The rest of our namespace (v2.1's tokenManager:team, :teams
			// and :role, who invited them) can name teams and people
			// beyond the caller's: only the roles below are shown.
			for k := range meta {
				if strings.HasPrefix(k, metaNamespace) {
					delete(meta, k)
				}
			}
		}
		roles := map[string]any{}
		for t, r := range teamRoles[u.ID] {
			roles[t] = string(r)
		}
		meta[metaTeamRoles] = roles
		if g := globalRoles[u.ID]; g != "" {
			meta[metaGlobalRole] = string(g)
		} else {
			delete(meta, metaGlobalRole)
		}
		out = append(out, UserView{CachedUser: cachedFromClerk(u), PublicMetadata: meta})
	}
	return out, nil
}

func cachedFromClerk(u *clerk.User) CachedUser {
	c := CachedUser{ID: u.ID, FirstName: u.FirstName, LastName: u.LastName, LastSignInMs: u.LastSignInAt, CreatedMs: u.CreatedAt}
	if e := primaryEmail(u); e != "" {
		c.Email = &e
	}
	if u.ImageURL != nil && *u.ImageURL != "" {
		c.ImageURL = u.ImageURL
	}
	return c
}

// ingestUsers refreshes the users cache with users from Clerk and applies
// pending invitations to those seen for the first time.
func (s *Service) ingestUsers(ctx context.Context, users []*clerk.User) error {
	if len(users) == 0 {
		return nil
	}
	cached := make([]CachedUser, len(users))
	byID := make(map[string]*clerk.User, len(users))
	for i, u := range users {
		cached[i] = cachedFromClerk(u)
		byID[u.ID] = u
	}
	return s.write(ctx, func(tx pgx.Tx) error {
		fresh, err := upsertUsers(ctx, tx, cached)
		if err != nil {
			return err
		}
		for _, id := range fresh {
			if err := applyInvitations(ctx, tx, id, verifiedEmails(byID[id])); err != nil {
				return err
			}
		}
		return nil
	})
}

// refreshUsers fetches users from Clerk into the cache.
func (s *Service) refreshUsers(ctx context.Context, ids []string) error {
	users, err := s.Directory.UsersByID(ctx, ids)
	if err != nil {
		return err
	}
	return s.ingestUsers(ctx, users)
}

// applyInvitations grants the roles of the pending invitations to emails
// to the user who has just appeared with them. Existing roles win: an
// invitation never demotes or overrides a role someone set since.
func applyInvitations(ctx context.Context, tx db.DBTX, userID string, emails []string) error {
	if len(emails) == 0 {
		return nil
	}
	lower := make([]string, len(emails))
	for i, e := range emails {
		lower[i] = strings.ToLower(e)
	}
	invs, err := teamdb.LockPendingInvitations(ctx, tx, store.LockPendingInvitationsParams{Emails: lower,
		Validity: fmt.Sprintf("%d seconds", int(invitationValidity.Seconds()))})
	if err != nil {
		return fmt.Errorf("pending invitations: %w", err)
	}
	if len(invs) == 0 {
		return nil
	}
	for _, inv := range invs {
		roles, err := decodeTeamRoles(inv.TeamRoles)
		if err != nil {
			return fmt.Errorf("pending invitations: %w", err)
		}
		granted := map[string]string{}
		for team, r := range roles {
			role, err := auth.ParseRole(r)
			if err != nil {
				continue
			}
			exists, err := existingTeams(ctx, tx, []string{team})
			if err != nil {
				return err
			}
			if !exists[team] {
				continue // deleted since the invitation
			}
			added, err := addMembershipIfAbsent(ctx, tx, userID, team, role, "invitation:"+inv.ID)
			if err != nil {
				return err
			}
			if added {
				granted[team] = string(role)
			}
		}
		if err := teamdb.MarkInvitationApplied(ctx, tx, store.MarkInvitationAppliedParams{ID: inv.ID, AppliedTo: &userID}); err != nil {
			return fmt.Errorf("mark invitation applied: %w", err)
		}
		// One event per team granted, like create and revoke (see
		// invitationChanges).
		changes, err := invitationChanges(ctx, tx, "accept", inv.ID, inv.Email, granted, map[string]any{"user_id": userID})
		if err != nil {
			return err
		}
		if err := audit(ctx, tx, changes...); err != nil {
			return err
		}
	}
	return mirror(ctx, tx, userID)
}

// ResolveAdminKey is the principal of a live admin key, by the hash of the
// key (NotFound when revoked or unknown); it marks the key used.
func (s *Service) ResolveAdminKey(ctx context.Context, keyHash string) (*auth.Principal, error) {
	return adminKeyPrincipal(ctx, s.pool, keyHash)
}

// ResolveUser is the principal of a verified Clerk user: roles from
// PostgreSQL, e-mail and name from the users cache, refreshed from Clerk
// when missing or older than UserTTL. Clerk being down never fails a
// sign-in: the principal then lacks (fresh) e-mail and name.
func (s *Service) ResolveUser(ctx context.Context, userID string) (*auth.Principal, error) {
	cached, ok, err := cachedUser(ctx, s.pool, userID)
	if err != nil {
		return nil, err
	}
	if (!ok || s.now().Sub(cached.RefreshedAt) > s.UserTTL) && s.Directory != nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		u, err := s.Directory.GetUser(cctx, userID)
		cancel()
		if err == nil {
			err = s.ingestUsers(ctx, []*clerk.User{u})
		}
		if err != nil {
			s.Log.DebugContext(ctx, "could not refresh user from Clerk", "user_id", userID, "error", err)
			if ok {
				// Keep the stale profile for another TTL rather than ask a
				// failing Clerk on every request.
				if terr := teamdb.TouchUser(ctx, s.pool, userID); terr != nil {
					return nil, terr
				}
			}
		} else if cached, ok, err = cachedUser(ctx, s.pool, userID); err != nil {
			return nil, err
		}
	}
	p, err := userPrincipal(ctx, s.pool, userID)
	if err != nil {
		return nil, err
	}
	if ok {
		if cached.Email != nil {
			p.Email = *cached.Email
		}
		p.Name = cached.Name()
	}
	return p, nil
}
