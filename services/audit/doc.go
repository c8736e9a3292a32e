// Package audit is the audit service: the append-only, hash-chained trail
// of every change and every token reveal in Token Manager.
//
// Writers (the token and team services) enqueue events in their outbox in
// the same transaction as the change (package auditlog); their relays
// deliver batches to Record, which is idempotent by event_id, so redelivery
// never duplicates an event. Record appends under a lock on the chain head,
// so every event carries the hash of the one before it (chain.go documents
// the canonical encoding) and VerifyChain can name the first event that was
// changed, removed or inserted behind the service's back. The database
// refuses to change, delete or truncate the trail's rows (migrations/0001).
//
// Reading is scoped like every other read in the system: a global ADMIN
// sees everything, anyone else the events of their teams, plus the events
// of no team (routes, admin keys, global roles) for core-team members.
//
// Layout: server.go translates RPCs, service.go holds the use cases,
// store.go the reads and writes of the trail over package store (all of
// the SQL: sqlc queries and the filtered list), validate.go what Record
// accepts.
package audit
