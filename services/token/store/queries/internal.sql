-- name: SecretByHash :one
SELECT token_id, valid_until FROM token.token_secrets WHERE hash = @hash;

-- Moves last_used forward (never back) for the tokens of the given hashes.
-- name: RecordTokenUse :execrows
UPDATE token.tokens t SET last_used = u.used_at
FROM (SELECT s.token_id, max(x.used_at) AS used_at
      FROM (SELECT unnest(sqlc.arg(hashes)::text[]) AS hash, unnest(sqlc.arg(used_at)::timestamptz[]) AS used_at) x
      JOIN token.token_secrets s ON s.hash = x.hash
      GROUP BY s.token_id) u
WHERE t.id = u.token_id AND (t.last_used IS NULL OR t.last_used < u.used_at);

-- Tokens (revoked ones too) by id or by a secret's hash, with all their hashes.
-- name: LookupTokens :many
SELECT sqlc.embed(t), coalesce(t.rotation_grace_ends_at > now(), false)::bool AS in_grace,
  ARRAY(SELECT s.hash FROM token.token_secrets s WHERE s.token_id = t.id ORDER BY s.created_at)::text[] AS hashes
FROM token.tokens t
WHERE t.id = ANY(@ids::bigint[]) OR t.id IN (SELECT token_id FROM token.token_secrets WHERE hash = ANY(@hashes::text[]))
ORDER BY t.id;

-- name: CountLiveTokens :one
SELECT count(*) FROM token.tokens t WHERE t.revoked_at IS NULL AND (@all_teams::bool OR t.team_id = ANY(@teams::text[]));

-- name: CountRoutes :one
SELECT count(*) FROM token.routes;

-- name: LiveTokensByTeam :many
SELECT t.team_id, count(*) AS count FROM token.tokens t
WHERE t.revoked_at IS NULL AND (@all_teams::bool OR t.team_id = ANY(@teams::text[]))
GROUP BY 1 ORDER BY 2 DESC, 1;

-- name: CreationTrend :many
-- Live tokens created per UTC day, over the last `days` days.
SELECT to_char(d.day, 'YYYY-MM-DD')::text AS date, count(t.id) AS count
FROM generate_series((now() AT TIME ZONE 'UTC')::date + (1 - @days::int), (now() AT TIME ZONE 'UTC')::date, interval '1 day') AS d(day)
LEFT JOIN token.tokens t ON (t.created_at AT TIME ZONE 'UTC')::date = d.day::date
  AND t.revoked_at IS NULL AND (@all_teams::bool OR t.team_id = ANY(@teams::text[]))
GROUP BY d.day ORDER BY d.day;

-- name: ExpiringTokens :many
SELECT sqlc.embed(t), coalesce(t.rotation_grace_ends_at > now(), false)::bool AS in_grace
FROM token.tokens t
WHERE t.revoked_at IS NULL AND (@all_teams::bool OR t.team_id = ANY(@teams::text[]))
  AND t.expires_at > now() AND t.expires_at <= now() + make_interval(days => @days::int)
ORDER BY t.expires_at LIMIT @max_rows::int;
