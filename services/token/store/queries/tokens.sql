-- A token as the service shows it: every query that returns one selects
-- sqlc.embed(t) and in_grace, whether its stored grace end (migration 0003)
-- is still ahead — compared with now() here, because a grace period ends
-- before the sweep clears it. Their row types all convert to TokenRow.

-- name: InsertToken :one
INSERT INTO token.tokens (name, team_id, created_by, description, scopes, preview, created_at, updated_at, expires_at)
VALUES (@name, @team_id, @created_by, @description, @scopes, @preview, @created_at, @created_at, @expires_at)
RETURNING id;

-- name: InsertTokenSecret :exec
INSERT INTO token.token_secrets (hash, token_id, ciphertext, created_at) VALUES (@hash, @token_id, @ciphertext, @created_at);

-- name: ListTokens :many
SELECT sqlc.embed(t), coalesce(t.rotation_grace_ends_at > now(), false)::bool AS in_grace
FROM token.tokens t
WHERE t.revoked_at IS NULL AND (@all_teams::bool OR t.team_id = ANY(@teams::text[]))
ORDER BY t.created_at DESC, t.id DESC;

-- name: LiveToken :one
SELECT sqlc.embed(t), coalesce(t.rotation_grace_ends_at > now(), false)::bool AS in_grace
FROM token.tokens t WHERE t.id = @id AND t.revoked_at IS NULL;

-- name: LockLiveToken :one
SELECT sqlc.embed(t), coalesce(t.rotation_grace_ends_at > now(), false)::bool AS in_grace
FROM token.tokens t WHERE t.id = @id AND t.revoked_at IS NULL FOR UPDATE OF t;

-- name: AnyToken :one
-- A token, revoked or not.
SELECT sqlc.embed(t), coalesce(t.rotation_grace_ends_at > now(), false)::bool AS in_grace
FROM token.tokens t WHERE t.id = @id;

-- name: TokenTeam :one
SELECT team_id FROM token.tokens WHERE id = @id;

-- name: LiveHashes :many
-- The hashes of a token whose KV entries may exist.
SELECT hash FROM token.token_secrets WHERE token_id = @token_id AND kv_removed_at IS NULL;

-- name: UpdateToken :exec
UPDATE token.tokens SET name = @name, description = @description, scopes = @scopes, updated_at = now() WHERE id = @id;

-- name: RevokeToken :exec
-- Every secret leaves KV with it, so no grace period remains.
UPDATE token.tokens SET revoked_at = now(), revoked_by = @revoked_by, rotation_grace_ends_at = NULL, updated_at = now()
WHERE id = @id;

-- name: RemoveTokenSecretsFromKV :many
-- Marks every secret of a token still in KV as removed; returns their hashes.
UPDATE token.token_secrets SET kv_removed_at = now()
WHERE token_id = @token_id AND kv_removed_at IS NULL
RETURNING hash;

-- name: RemoveEndedSecretsFromKV :many
-- Marks the secrets of a token whose validity ended by `at` as removed from KV.
UPDATE token.token_secrets SET kv_removed_at = now()
WHERE token_id = @token_id AND kv_removed_at IS NULL AND valid_until <= @at
RETURNING hash;

-- name: CurrentSecret :one
SELECT hash, ciphertext FROM token.token_secrets WHERE token_id = @token_id AND valid_until IS NULL;

-- name: EndSecretsBy :many
-- Every secret of a token still valid past `until` now ends there.
UPDATE token.token_secrets SET valid_until = @until
WHERE token_id = @token_id AND kv_removed_at IS NULL AND (valid_until IS NULL OR valid_until > @until)
RETURNING hash;

-- name: SetTokenPreview :exec
UPDATE token.tokens SET preview = @preview, updated_at = now() WHERE id = @id;

-- name: SyncGraceEnd :exec
-- Recomputes the stored grace end of tokens from their secrets.
UPDATE token.tokens t SET rotation_grace_ends_at =
  (SELECT max(s.valid_until) FROM token.token_secrets s
   WHERE s.token_id = t.id AND s.valid_until IS NOT NULL AND s.kv_removed_at IS NULL)
WHERE t.id = ANY(@ids::bigint[]);

-- name: LockTokensDueForSweep :many
-- Tokens with a secret that must leave KV (expired, grace over, revoked), in
-- id order, locked: the lock order RotateToken and DeleteToken use.
SELECT t.id FROM token.tokens t
WHERE EXISTS (SELECT 1 FROM token.token_secrets s WHERE s.token_id = t.id
              AND s.kv_removed_at IS NULL AND (t.expires_at <= now() OR s.valid_until <= now() OR t.revoked_at IS NOT NULL))
ORDER BY t.id FOR UPDATE OF t;

-- name: SweepSecrets :many
UPDATE token.token_secrets s SET kv_removed_at = now()
FROM token.tokens t
WHERE s.token_id = t.id AND t.id = ANY(@ids::bigint[])
  AND s.kv_removed_at IS NULL AND (t.expires_at <= now() OR s.valid_until <= now() OR t.revoked_at IS NOT NULL)
RETURNING s.hash;

-- name: UnknownScope :one
-- The first scope (in order) that grants nothing: not "*", no route whose
-- service segment (second path segment, as the Worker matches it) it is,
-- and for "tag:<t>" no route carrying the tag.
SELECT s::text FROM unnest(@scopes::text[]) WITH ORDINALITY AS u(s, n)
WHERE s <> '*' AND NOT EXISTS (SELECT 1 FROM token.routes r WHERE CASE
    WHEN s LIKE 'tag:%' THEN substr(s, 5) = ANY(r.tags)
    ELSE split_part(r.path, '/', 3) = s END)
ORDER BY n LIMIT 1;
