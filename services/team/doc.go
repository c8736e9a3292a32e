// Package team is the team service: teams, memberships and roles (the
// source of truth; Clerk metadata only mirrors them), admin API keys and
// invitations. It also answers "who is this caller" for every other service
// (GetPrincipal), so authorization rules rest on one set of roles.
//
// The foundation slice implemented here: the schema, the bootstrap admin
// key, principal resolution for admin keys and Clerk users, and LookupTeams.
// The remaining RPCs answer Unimplemented until the team service issue.
package team
