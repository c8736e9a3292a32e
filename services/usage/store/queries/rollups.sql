-- The dashboards' static reads of the rollups. Every query takes the
-- caller's scope as all_teams (every team) or team_ids (the listed ones).
-- The reads by one dimension of usage.rollup_dim with optional filters are
-- in rollups.go.

-- name: Totals :one
-- Totals sums the daily team rollups in scope (all time: as long as
-- retention keeps them).
SELECT coalesce(sum(calls), 0)::bigint         AS calls,
       coalesce(sum(errors), 0)::bigint        AS errors,
       coalesce(sum(latency_sum), 0)::bigint   AS latency_sum,
       coalesce(sum(latency_count), 0)::bigint AS latency_count
FROM usage.rollup_dim
WHERE kind = 'd' AND dim = 'team' AND (@all_teams::boolean OR team_id = ANY(@team_ids::text[]));

-- name: HourlyTotals :many
-- HourlyTotals is the figures per hour since since in scope, newest first;
-- empty hours absent.
SELECT bucket, sum(calls)::bigint AS calls, sum(errors)::bigint AS errors,
       sum(latency_sum)::bigint AS latency_sum, sum(latency_count)::bigint AS latency_count
FROM usage.rollup_dim
WHERE kind = 'h' AND dim = 'team' AND bucket >= @since
  AND (@all_teams::boolean OR team_id = ANY(@team_ids::text[]))
GROUP BY bucket ORDER BY bucket DESC;

-- name: RouteDistributionOfToken :many
-- RouteDistributionOfToken counts a token's calls per route path ('' for
-- none) in scope, most first (all time).
SELECT route_path::text AS key, sum(calls)::bigint AS count
FROM usage.rollup_daily
WHERE token_id = @token_id AND (@all_teams::boolean OR team_id = ANY(@team_ids::text[]))
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT @max_rows;

-- name: TokenDistributionOfRoute :many
-- TokenDistributionOfRoute counts a route's calls per token id (as text)
-- in scope, most first (all time).
SELECT token_id::text AS key, sum(calls)::bigint AS count
FROM usage.rollup_daily
WHERE route_path = @route_path AND (@all_teams::boolean OR team_id = ANY(@team_ids::text[]))
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT @max_rows;

-- name: TrimDailyRollups :exec
DELETE FROM usage.rollup_daily WHERE day < @cutoff::date;

-- name: TrimDimRollups :exec
DELETE FROM usage.rollup_dim WHERE bucket < @cutoff;
