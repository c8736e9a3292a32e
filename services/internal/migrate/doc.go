// Package migrate applies each service's numbered SQL migrations to its own
// PostgreSQL schema, and lets a service check at start-up that its schema is
// exactly as new as its binary expects.
//
// Migrations run only by an explicit step (tmctl migrate), never as a side
// effect of a service starting: a service calls Check and refuses to start
// when the schema is behind or ahead of it.
//
// A migration set is a directory of files named NNNN_description.sql,
// numbered from 1 without gaps, usually embedded in the service package:
//
//	//go:embed migrations/*.sql
//	var Migrations embed.FS
//
//	set := migrate.Set{Schema: "token", FS: Migrations, Dir: "migrations"}
//
// Each file runs in its own transaction together with the row recording it
// in <schema>.schema_migrations, so a failing file leaves nothing behind and
// is tried again next time. Every transaction first takes an advisory lock
// keyed on the schema, so runners started at the same moment take turns and
// the later ones find nothing left to do. Because of that transaction, a
// file cannot use statements that refuse to run in one, such as
// CREATE INDEX CONCURRENTLY.
//
// The search_path of a migration is its schema, so unqualified names land
// there; writing names qualified (token.tokens) is clearer still.
//
// The SHA-256 of each applied file is recorded; editing a file after it was
// applied is reported as an error rather than silently ignored. Write a new
// migration instead.
package migrate
