// Package team is the team service: teams, memberships and roles (the
// source of truth; Clerk metadata only mirrors them), admin API keys and
// invitations. It also answers "who is this caller" for every other service
// (GetPrincipal), so authorization rules rest on one set of roles.
//
// Layout: server.go converts proto ↔ domain; service.go and the files per
// aggregate (teams.go, members.go, users.go, invitations.go, adminkeys.go,
// globalroles.go, importroles.go, bootstrap.go) hold the use cases, each
// authorizing through package authz and writing its change, audit event and
// Clerk mirror message in one transaction, in the order it takes its locks.
// All of the SQL is in package store (store/queries/*.sql, compiled by
// sqlc); rows.go turns its rows into domain types and holds the reads and
// writes several use cases share. The outbox's SQL is package outbox's.
// directory.go is Clerk (clerk-sdk-go); mirror.go is the outbox handler that
// writes roles to Clerk publicMetadata.
package team
