// Package token is the token service: API tokens (issue, list, update,
// reveal, rotate, revoke), the edge's routes and their backend credentials,
// and what Cloudflare Workers KV must hold for the Worker to enforce them.
//
// Every write commits its change, its KV sync messages and its audit event
// in one transaction (package outbox): the KV relay then reads each key's
// wanted value from PostgreSQL when it sends (kvstate.go), so a late or
// repeated message never writes an old value, and the reconciler repairs
// any drift. A token's team is checked against the token service's own
// team registry in the same transaction (team_registry: no token outlives
// its team); a route's credentials are its own (kvkeys.go routeSecretRef).
//
// Layout: server.go converts proto ↔ domain; service.go holds the
// dependencies; tokens.go, routes.go and internal_rpc.go are the use cases,
// each authorizing through package authz, in the order it takes its locks;
// validate.go checks input; kvkeys.go and kvstate.go are the KV layout. All
// of the SQL is in package store (store/queries/*.sql, compiled by sqlc);
// tokenOf and routeOf turn its rows into domain types. keyring seals what
// must be revealable; kvsync speaks to Cloudflare (cloudflare-go).
package token
