// Package health is the health service: liveness for the dashboard's status
// dot, and a detailed report on every dependency (PostgreSQL, Cloudflare
// Workers KV, Clerk) and every service's grpc.health.v1 state, for the
// system health page. It owns no data.
//
// Overall status rules (also in the README):
//   - unhealthy: the database check failed, or no service is serving;
//   - degraded: any service is not serving, or a configured dependency
//     (Cloudflare KV, Clerk) failed or warns — cloudflare_kv also warns when
//     the token service's KV sync lags (a change pending over 60 s, a stale
//     reconcile, failing deliveries), see WithSyncStatus;
//   - healthy: otherwise. A dependency that is not configured reports
//     "skipped" with the reason and never degrades the status.
package health
