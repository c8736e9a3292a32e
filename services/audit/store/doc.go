// Package store is all of the audit service's SQL: the queries in
// queries/*.sql, compiled by sqlc (sqlc.yaml at the repository root) against
// the schema the service's migrations build, into the *.gen.go files
// beside this one, and the one query whose conditions depend on the
// filters set (the audit-log list, its total and the export), which
// events.go builds by hand from a typed EventFilter. `make generate`
// rewrites the *.gen.go files; `make test` fails when the committed files
// differ from what it would write.
//
// Queries take the connection as an argument (a pool, or the transaction
// of an append), so the caller decides what runs in one transaction.
package store
