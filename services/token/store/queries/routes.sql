-- name: InsertRoute :one
INSERT INTO token.routes (name, path, backend_url, description, tags, backend_auth_type, backend_auth_config)
VALUES (@name, @path, @backend_url, @description, @tags, @backend_auth_type, sqlc.narg(backend_auth_config)::jsonb)
RETURNING *;

-- name: LockRoute :one
SELECT * FROM token.routes WHERE id = @id FOR UPDATE;

-- name: UpdateRoute :one
UPDATE token.routes
SET name = @name, backend_url = @backend_url, description = @description, tags = @tags,
    backend_auth_type = @backend_auth_type, backend_auth_config = sqlc.narg(backend_auth_config)::jsonb, updated_at = now()
WHERE id = @id
RETURNING *;

-- name: DeleteRoute :exec
DELETE FROM token.routes WHERE id = @id;

-- name: ListRoutes :many
SELECT * FROM token.routes ORDER BY created_at DESC, id DESC;

-- name: ListRouteTags :many
SELECT DISTINCT unnest(tags)::text AS tag FROM token.routes ORDER BY tag;

-- name: PutRouteSecret :exec
INSERT INTO token.route_secrets (route_id, name, ciphertext) VALUES (@route_id, @name, @ciphertext)
ON CONFLICT (route_id, name) DO UPDATE
SET ciphertext = EXCLUDED.ciphertext, sealed_as_legacy = false, updated_at = now();

-- name: HeldSecretNames :many
SELECT name FROM token.route_secrets WHERE route_id = @route_id;

-- name: DeleteRouteSecretsExcept :many
-- Deletes the secrets of a route that keep names no longer lists.
DELETE FROM token.route_secrets WHERE route_id = @route_id AND NOT (name = ANY(@keep::text[]))
RETURNING name;

-- name: RouteSecrets :many
-- The secrets of the routes with the given paths; all when paths is null.
SELECT r.path, s.name, s.ciphertext, s.sealed_as_legacy
FROM token.route_secrets s JOIN token.routes r ON r.id = s.route_id
WHERE sqlc.narg(paths)::text[] IS NULL OR r.path = ANY(sqlc.narg(paths)::text[]);

-- name: RouteTable :many
-- The routing table as KV publishes it.
SELECT path, backend_url, tags, backend_auth_type, backend_auth_config FROM token.routes;
