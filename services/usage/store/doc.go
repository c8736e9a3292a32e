// Package store is all of the usage service's SQL. The static queries are
// in queries/*.sql, compiled by sqlc (sqlc.yaml at the repository root)
// against the schema the service's migrations build, into the *.gen.go
// files beside this one; `make generate` rewrites them and `make test`
// fails when the committed files differ from what it would write.
//
// Four kinds of statement are hand-written here instead, each behind a
// typed function so that no SQL text or placeholder leaves the package:
// the ingest statement (ingest.go: its rollup upserts are spelled from
// LatencyBounds), the reads of usage.rollup_dim by one Dimension with
// optional filters (rollups.go), the newest-events lists with their
// per-team form (events.go), and the partition DDL, which names a table
// (partitions.go).
//
// Queries take the connection as an argument (a pool, or a transaction),
// so the caller decides what runs in one transaction.
package store
