// Package authz is the permission matrix of the whole system, in one place:
// every service asks Authorize before it acts, so the rules of contract §5.4
// (with ARCHITECTURE.md's holes closed) are written down exactly once.
//
// Roles per team: ADMIN > MANAGER > DEVELOPER > VIEWER; plus a global ADMIN
// who may do everything. Admin keys carry roles exactly like people.
// Services (service credentials) are not authorized here: internal RPCs
// check auth.RequireService instead, and public RPCs check nothing.
package authz

import (
	"fmt"
	"slices"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// CoreTeam is the team whose roles govern routes (contract §5.3).
const CoreTeam = "core-team"

// Action is something a principal wants to do.
type Action string

// The actions of the REST API.
const (
	TokenCreate Action = "token.create"
	TokenUpdate Action = "token.update"
	TokenDelete Action = "token.delete"
	TokenRotate Action = "token.rotate"
	TokenReveal Action = "token.reveal"
	// TokenUsage is /api/usage/token/{id}: per-token call details (IPs, agents).
	TokenUsage Action = "token.usage"

	RouteCreate Action = "route.create"
	RouteUpdate Action = "route.update"
	RouteDelete Action = "route.delete"

	TeamCreate Action = "team.create"
	TeamUpdate Action = "team.update"
	TeamDelete Action = "team.delete"
	// TeamRead is reading one team and its members.
	TeamRead Action = "team.read"
	// MembersManage is adding, changing and removing members of a team;
	// what role may be granted is checked by CanGrant.
	MembersManage Action = "team.members.manage"

	UserList Action = "user.list"
	// InvitationCreate is inviting someone; which team roles the invitation
	// may carry is checked by CanGrant for each of them.
	InvitationCreate Action = "invitation.create"
	InvitationList   Action = "invitation.list"
	InvitationAdmin  Action = "invitation.revoke"
	AdminKeyManage   Action = "admin_key.manage"
	RolesImport      Action = "roles.import"
	// GlobalRoleManage is granting and revoking a person's global ADMIN role.
	GlobalRoleManage Action = "global_role.manage"
)

// Resource is what an action is about.
type Resource struct {
	// Team is the team that owns the resource ("" for global resources).
	Team string
	// CreatedBy is the principal id that created the resource, for the
	// creator's own rights (a creator may reveal their token).
	CreatedBy string
}

// rule is the least role needed in the resource's team (or in core-team
// for routes). Empty means global ADMIN only.
var rules = map[Action]auth.Role{
	TokenCreate:   auth.RoleDeveloper,
	TokenUpdate:   auth.RoleManager,
	TokenDelete:   auth.RoleManager,
	TokenRotate:   auth.RoleManager,
	TokenReveal:   auth.RoleManager, // or the creator; VIEWERs no longer (v2.7 allowed any member)
	TokenUsage:    auth.RoleManager,
	RouteCreate:   auth.RoleDeveloper,
	RouteUpdate:   auth.RoleManager,
	RouteDelete:   auth.RoleAdmin,
	TeamUpdate:    auth.RoleAdmin,
	TeamDelete:    auth.RoleAdmin,
	TeamRead:      auth.RoleViewer,
	MembersManage: auth.RoleManager,
}

// routeActions are governed by the caller's role in core-team.
var routeActions = []Action{RouteCreate, RouteUpdate, RouteDelete}

// Authorize returns nil when p may do a on r, else a PermissionDenied
// domain error whose message says what is missing (never what others hold).
func Authorize(p *auth.Principal, a Action, r Resource) error {
	if p == nil {
		return errs.Unauthenticated("Not authenticated")
	}
	if p.Kind == auth.KindService {
		return errs.Forbidden("Permission denied: services act only through internal methods")
	}
	if p.IsGlobalAdmin() {
		return nil
	}
	switch a {
	case TeamCreate:
		// Any team ADMIN may create a team (and becomes its ADMIN); only a
		// global ADMIN may hand out roles in teams they are not in.
		if p.HighestRole().AtLeast(auth.RoleAdmin) {
			return nil
		}
		return errs.Forbidden("Only ADMIN can create teams")
	case InvitationCreate:
		if p.HighestRole().AtLeast(auth.RoleAdmin) {
			return nil
		}
		return errs.Forbidden("Only ADMIN can invite users")
	case UserList:
		if p.HighestRole().AtLeast(auth.RoleManager) {
			return nil
		}
		return errs.Forbidden("Permission denied: listing users needs MANAGER or ADMIN in a team")
	case InvitationList, InvitationAdmin, AdminKeyManage, RolesImport, GlobalRoleManage:
		return errs.Forbidden("Permission denied: global ADMIN only")
	}

	need, ok := rules[a]
	if !ok {
		return errs.Forbidden(fmt.Sprintf("Permission denied: %s", a))
	}
	team := r.Team
	if slices.Contains(routeActions, a) {
		team = CoreTeam
	}
	if team == "" {
		return errs.Forbidden("Permission denied: global ADMIN only")
	}
	role := p.RoleIn(team)
	if a == TokenReveal && r.CreatedBy != "" && r.CreatedBy == p.ID && role != "" {
		return nil // the creator, still a member of the team
	}
	if role == "" {
		if team == CoreTeam && slices.Contains(routeActions, a) {
			return errs.Forbidden("Core Team permission is required to manage routes")
		}
		return errs.Forbidden(fmt.Sprintf("You are not a member of team '%s'", team))
	}
	if !role.AtLeast(need) {
		return errs.Forbidden(fmt.Sprintf("Role '%s' cannot %s. Required: %s or above", role, verb(a), need))
	}
	return nil
}

func verb(a Action) string {
	switch a {
	case TokenCreate:
		return "create tokens"
	case TokenUpdate:
		return "edit tokens"
	case TokenDelete:
		return "delete tokens"
	case TokenRotate:
		return "rotate tokens"
	case TokenReveal:
		return "reveal tokens"
	case TokenUsage:
		return "view token usage"
	case RouteCreate:
		return "create routes"
	case RouteUpdate:
		return "edit routes"
	case RouteDelete:
		return "delete routes"
	case TeamUpdate:
		return "edit this team"
	case TeamDelete:
		return "delete this team"
	case TeamRead:
		return "view this team"
	case MembersManage:
		return "manage team members"
	}
	return string(a)
}

// CanGrant reports whether p may give role to someone in team, or change or
// remove a member whose current role there is current ("" when not a member).
// Nobody grants above their own role; a MANAGER handles only DEVELOPERs and
// VIEWERs.
func CanGrant(p *auth.Principal, team string, role, current auth.Role) error {
	if err := Authorize(p, MembersManage, Resource{Team: team}); err != nil {
		return err
	}
	if p.IsGlobalAdmin() {
		return nil
	}
	mine := p.RoleIn(team)
	if mine == auth.RoleAdmin {
		return nil
	}
	// MANAGER (Authorize guaranteed at least that).
	if role.AtLeast(auth.RoleManager) {
		return errs.Forbidden("MANAGER cannot assign ADMIN or MANAGER roles")
	}
	if current.AtLeast(auth.RoleManager) {
		return errs.Forbidden("MANAGER cannot edit users with ADMIN or MANAGER role in this team")
	}
	return nil
}

// ReadScope says which teams' data p may read: all of them (global ADMIN),
// or the listed teams (those p has any role in).
func ReadScope(p *auth.Principal) (all bool, teams []string) {
	if p == nil {
		return false, nil
	}
	if p.IsGlobalAdmin() || p.Kind == auth.KindService {
		return true, nil
	}
	for t := range p.TeamRoles {
		teams = append(teams, t)
	}
	slices.Sort(teams)
	return false, teams
}

// CanRead reports whether p may read data of team.
func CanRead(p *auth.Principal, team string) bool {
	all, teams := ReadScope(p)
	return all || slices.Contains(teams, team)
}
