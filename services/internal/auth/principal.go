package auth

import (
	"context"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Kind says how a principal authenticated.
type Kind string

const (
	KindUser     Kind = "user"      // a person, with a Clerk session
	KindAdminKey Kind = "admin_key" // a machine, with an admin API key
	KindService  Kind = "service"   // another Token Manager service
)

// Role is a permission level, per team or global. The order is
// VIEWER < DEVELOPER < MANAGER < ADMIN; the empty Role is no role at all.
type Role string

const (
	RoleViewer    Role = "VIEWER"
	RoleDeveloper Role = "DEVELOPER"
	RoleManager   Role = "MANAGER"
	RoleAdmin     Role = "ADMIN"
)

// ParseRole returns the Role spelled s (exactly, as the REST contract has
// it), or an InvalidArgument error.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.rank() > 0 {
		return r, nil
	}
	return "", errs.Invalid("Invalid role: " + s)
}

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleDeveloper:
		return 2
	case RoleManager:
		return 3
	case RoleAdmin:
		return 4
	}
	return 0
}

// AtLeast reports whether r is a role and is min or above it.
func (r Role) AtLeast(min Role) bool { return r.rank() > 0 && r.rank() >= min.rank() }

// Principal is the authenticated caller of an RPC. Principals handed out by
// a Resolver may be shared between requests: treat them as read-only.
type Principal struct {
	Kind Kind
	// ID is the Clerk user id, the admin key id or the service name.
	ID    string
	Email string
	Name  string
	// GlobalRole is RoleAdmin for global administrators, else empty.
	GlobalRole Role
	// TeamRoles maps a team id to the principal's role in that team.
	TeamRoles map[string]Role
}

// RoleIn returns the principal's role in team, or "" if it is not a member.
// A global ADMIN is not thereby a member: check IsGlobalAdmin as well.
func (p *Principal) RoleIn(team string) Role { return p.TeamRoles[team] }

// IsGlobalAdmin reports whether p may act on every team.
func (p *Principal) IsGlobalAdmin() bool { return p.GlobalRole == RoleAdmin }

// HighestRole returns the highest of p's global and team roles, and
// RoleViewer when p has none (the REST contract's "highest team role").
func (p *Principal) HighestRole() Role {
	best := RoleViewer
	if p.GlobalRole.rank() > best.rank() {
		best = p.GlobalRole
	}
	for _, r := range p.TeamRoles {
		if r.rank() > best.rank() {
			best = r
		}
	}
	return best
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the Authenticator put in ctx. It is
// absent for anonymous calls to public methods.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

// Caller returns the authenticated principal of ctx, or Unauthenticated
// when there is none: the first line of every RPC that needs a caller.
func Caller(ctx context.Context) (*Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return nil, errs.Unauthenticated(msgMissing)
	}
	return p, nil
}

// RequireService guards internal RPCs, which only other services may call.
func RequireService(ctx context.Context) error {
	p, ok := FromContext(ctx)
	switch {
	case !ok:
		return errs.Unauthenticated(msgMissing)
	case p.Kind != KindService:
		return errs.Forbidden("Permission denied: internal method")
	}
	return nil
}
