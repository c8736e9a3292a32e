-- name: LiveSecrets :many
-- The secrets that belong in KV (token:<hash>) with their tokens: not
-- removed, token live, neither expired nor past its grace end. Only the
-- given hashes, or all when hashes is null.
SELECT s.hash, t.id, t.name, t.team_id, t.scopes, t.created_at, t.expires_at, s.valid_until
FROM token.token_secrets s JOIN token.tokens t ON t.id = s.token_id
WHERE s.kv_removed_at IS NULL AND t.revoked_at IS NULL
  AND (t.expires_at IS NULL OR t.expires_at > now())
  AND (s.valid_until IS NULL OR s.valid_until > now())
  AND (sqlc.narg(hashes)::text[] IS NULL OR s.hash = ANY(sqlc.narg(hashes)::text[]));
