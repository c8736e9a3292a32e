package team

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/team/store"
)

// A person's global ADMIN role lives in team.global_roles (one row per
// global ADMIN) and is mirrored to Clerk's tokenManager:globalRole by the
// clerk_roles outbox, like team roles. Only a global ADMIN (a person, or an
// admin key holding the global role) may grant or revoke it; "tmctl
// global-admin" does the same directly against the database. The last
// global ADMIN person cannot be revoked. Admin keys are not counted: a key
// cannot sign in to the dashboard, and its global role is fixed when it is
// created (the bootstrap key by TM_BOOTSTRAP_ADMIN_KEY).

// TmctlPrincipal is the caller "tmctl global-admin" puts in its context:
// an operator with the database URL has no principal, and the audit trail
// names the change's actor from the context ("tmctl (service)").
var TmctlPrincipal = &auth.Principal{Kind: auth.KindService, ID: "tmctl"}

// parseGlobalRole accepts the one global role there is.
func parseGlobalRole(s string) error {
	if s != string(auth.RoleAdmin) {
		return errs.Invalid("Invalid global role: " + truncate(s, 20) + " (the only global role is ADMIN)")
	}
	return nil
}

// SetGlobalRole makes userID a global ADMIN. role must be "ADMIN". The
// user must exist in Clerk (404 otherwise). It reports whether anything
// changed: granting the role again writes, audits and mirrors nothing.
func (s *Service) SetGlobalRole(ctx context.Context, userID, role string) (bool, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return false, err
	}
	if err := userRef(userID); err != nil {
		return false, err
	}
	if err := parseGlobalRole(role); err != nil {
		return false, err
	}
	if err := authz.Authorize(p, authz.GlobalRoleManage, authz.Resource{}); err != nil {
		return false, err
	}
	return GrantGlobalAdmin(ctx, s.pool, s.Directory, userID)
}

// RemoveGlobalRole takes userID's global ADMIN role away: 404 when they do
// not hold it, 409 when they are the last global ADMIN.
func (s *Service) RemoveGlobalRole(ctx context.Context, userID string) error {
	p, err := auth.Caller(ctx)
	if err != nil {
		return err
	}
	if err := userRef(userID); err != nil {
		return err
	}
	if err := authz.Authorize(p, authz.GlobalRoleManage, authz.Resource{}); err != nil {
		return err
	}
	return RevokeGlobalAdmin(ctx, s.pool, s.Directory, userID)
}

// GrantGlobalAdmin is the logic behind SetGlobalRole without the caller
// check (tmctl calls it directly); the actor is the principal of ctx, which
// auditlog writes into the event as created_by and created_by_email. The user is looked up in Clerk first: a
// mistyped id must not become an administrator nobody can see.
func GrantGlobalAdmin(ctx context.Context, pool *pgxpool.Pool, dir *Directory, userID string) (bool, error) {
	if err := userRef(userID); err != nil {
		return false, err
	}
	u, err := dir.GetUser(ctx, userID)
	if err != nil {
		return false, err
	}
	cached := cachedFromClerk(u)
	changed := false
	err = db.InTx(ctx, pool, func(tx pgx.Tx) error {
		// Keep the profile: a later revocation names the user by it even if
		// Clerk is down or has deleted them. A user the cache sees for the
		// first time gets their pending invitations, as in ingestUsers.
		fresh, err := upsertUsers(ctx, tx, []CachedUser{cached})
		if err != nil {
			return err
		}
		if slices.Contains(fresh, userID) {
			if err := applyInvitations(ctx, tx, userID, verifiedEmails(u)); err != nil {
				return err
			}
		}
		n, err := teamdb.GrantGlobalAdmin(ctx, tx, store.GrantGlobalAdminParams{UserID: userID, GrantedBy: grantedBy(ctx)})
		if err != nil {
			return fmt.Errorf("grant global role: %w", err)
		}
		if n == 0 {
			return nil // already a global ADMIN
		}
		changed = true
		if err := audit(ctx, tx, auditlog.Change{Action: "create", EntityType: "global_role", EntityID: userID,
			Details: map[string]any{"name": displayName(userID, cached.Email), "user_id": userID, "role": string(auth.RoleAdmin)}}); err != nil {
			return err
		}
		return mirror(ctx, tx, userID)
	})
	return changed, err
}

// RevokeGlobalAdmin is the logic behind RemoveGlobalRole without the
// caller check. Every global_roles row is locked, in one order, before the
// count: of two revocations racing for the last two global ADMINs the
// second waits, then sees one row left and is refused.
func RevokeGlobalAdmin(ctx context.Context, pool *pgxpool.Pool, dir *Directory, userID string) error {
	if err := userRef(userID); err != nil {
		return err
	}
	name := revokedName(ctx, pool, dir, userID)
	return db.InTx(ctx, pool, func(tx pgx.Tx) error {
		admins, err := teamdb.LockGlobalAdmins(ctx, tx)
		if err != nil {
			return fmt.Errorf("lock global roles: %w", err)
		}
		if !slices.Contains(admins, userID) {
			return errs.NotFound("User is not a global ADMIN")
		}
		if len(admins) <= 1 {
			return errs.Conflict("Cannot revoke the last global ADMIN: grant the role to someone else first")
		}
		if err := teamdb.DeleteGlobalRole(ctx, tx, userID); err != nil {
			return fmt.Errorf("revoke global role: %w", err)
		}
		if err := audit(ctx, tx, auditlog.Change{Action: "delete", EntityType: "global_role", EntityID: userID,
			Details: map[string]any{"name": name, "user_id": userID, "role": string(auth.RoleAdmin)}}); err != nil {
			return err
		}
		return mirror(ctx, tx, userID)
	})
}

// revokedName is the e-mail of a user whose role is being revoked: from the
// users cache, else from Clerk (best effort: a user Clerk deleted, or Clerk
// being down, must not block a revocation), else the user id.
func revokedName(ctx context.Context, pool *pgxpool.Pool, dir *Directory, userID string) string {
	cached, ok, err := cachedUser(ctx, pool, userID)
	if err == nil && ok && cached.Email != nil && *cached.Email != "" {
		return *cached.Email
	}
	if dir != nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var u *clerk.User
		if u, err = dir.GetUser(cctx, userID); err == nil {
			return displayName(userID, cachedFromClerk(u).Email)
		}
	}
	return userID
}

// displayName is the user's e-mail, or their id when they have none.
func displayName(userID string, email *string) string {
	if email != nil && *email != "" {
		return *email
	}
	return userID
}

// GlobalAdmin is a row of team.global_roles, with the cached e-mail.
type GlobalAdmin struct {
	UserID    string    `json:"user_id"`
	Email     *string   `json:"email"`
	GrantedAt time.Time `json:"granted_at"`
	GrantedBy string    `json:"granted_by"`
}

// ListGlobalAdmins returns every global ADMIN person, oldest grant first
// ("tmctl global-admin list").
func ListGlobalAdmins(ctx context.Context, q db.DBTX) ([]GlobalAdmin, error) {
	rows, err := teamdb.ListGlobalAdmins(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list global admins: %w", err)
	}
	out := make([]GlobalAdmin, len(rows))
	for i, r := range rows {
		out[i] = GlobalAdmin{UserID: r.UserID, Email: r.Email, GrantedAt: r.GrantedAt, GrantedBy: r.GrantedBy}
	}
	return out, nil
}

// grantedBy is the id of ctx's caller, for team.global_roles.granted_by.
func grantedBy(ctx context.Context) string {
	if p, ok := auth.FromContext(ctx); ok {
		return p.ID
	}
	return "system"
}
