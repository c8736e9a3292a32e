// Package db holds what every service needs to talk to PostgreSQL with pgx:
// one pool per process with settings chosen once (Connect), an interface
// that lets the same query functions run on a pool or inside a transaction
// (DBTX), a transaction helper that retries the failures PostgreSQL asks
// clients to retry (InTx), and predicates on the errors a store maps to
// gRPC codes (IsUniqueViolation and friends).
package db
