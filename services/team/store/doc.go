// Package store is all of the team service's SQL: the queries in
// queries/*.sql, compiled by sqlc (sqlc.yaml at the repository root) against
// the schema the service's migrations build, into the *.gen.go files
// beside this one. `make generate` rewrites them; `make test` fails when
// the committed files differ from what it would write.
//
// Queries take the connection as an argument (a pool, or the transaction
// of a use case), so a use case decides what runs in one transaction and
// in which order it takes its locks.
package store
