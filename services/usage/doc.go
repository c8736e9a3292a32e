// Package usage is the usage service: it takes the Worker's signed usage
// reports (POST /api/usage-log through the gateway), stores every event
// durably before it answers, keeps hourly rollups beside them, and serves
// the usage analytics and the dashboard overview.
//
// Ingest is acknowledged only once committed: ingest.go verifies the
// signature (signature.go) and decodes the body (payload.go), then hands
// the events to the single writer (ingester.go), which batches concurrent
// requests into one statement — events and rollups together, so the two
// never disagree — and answers each request when its batch is committed.
// tokens.go forwards last-used times to the token service, at most once per
// interval; maintain.go creates the daily partitions ahead and drops those
// past the retention.
//
// Layout: server.go converts proto ↔ domain (convert.go) and maps nothing
// but requests and results; service.go builds the parts from their
// dependencies; analytics.go, analytics_drilldown.go and overview.go are
// the read use cases over the rollups (rollups.go sums them, histogram.go
// turns buckets into percentiles) and return the types of
// analytics_model.go; names.go caches token and route names. All of the SQL
// is in package store: static queries in store/queries/*.sql compiled by
// sqlc, the ingest statement, the rollup reads by dimension and the
// partition DDL hand-written there over typed filters.
package usage
