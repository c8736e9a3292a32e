-- name: AdminKeyPrincipal :one
-- The live admin key with this hash, marked used (at most once a minute,
-- to keep reads cheap).
UPDATE team.admin_keys
   SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < now() - interval '1 minute'
                           THEN now() ELSE last_used_at END
 WHERE key_hash = @key_hash AND revoked_at IS NULL
RETURNING id, name, global_role;

-- name: AdminKeyRoles :many
SELECT team_id, role FROM team.admin_key_roles WHERE key_id = @key_id;

-- name: InsertAdminKey :one
INSERT INTO team.admin_keys (id, name, key_hash, prefix, global_role, created_by)
VALUES (@id, @name, @key_hash, @prefix, @global_role, @created_by)
RETURNING created_at;

-- name: InsertAdminKeyRole :exec
INSERT INTO team.admin_key_roles (key_id, team_id, role) VALUES (@key_id, @team_id, @role);

-- name: ListAdminKeys :many
-- Every admin key, newest first, revoked ones too; team_roles is a JSON
-- object of team id to role.
SELECT k.id, k.name, k.prefix, k.global_role, k.created_by, k.created_at, k.last_used_at, k.revoked_at,
       COALESCE((SELECT jsonb_object_agg(r.team_id, r.role) FROM team.admin_key_roles r WHERE r.key_id = k.id), '{}')::jsonb AS team_roles
FROM team.admin_keys k ORDER BY k.created_at DESC, k.id;

-- name: RevokeAdminKey :one
-- Revokes a key (again, harmlessly); was_live says whether it was live.
WITH k AS (SELECT x.id, x.revoked_at IS NULL AS live FROM team.admin_keys x WHERE x.id = @id FOR UPDATE)
UPDATE team.admin_keys a SET revoked_at = COALESCE(a.revoked_at, now())
  FROM k WHERE a.id = k.id
RETURNING k.live::boolean AS was_live, a.name, a.prefix, a.global_role,
          COALESCE((SELECT jsonb_object_agg(r.team_id, r.role) FROM team.admin_key_roles r WHERE r.key_id = a.id), '{}')::jsonb AS team_roles;

-- name: CountLiveKeyRolesBesides :one
-- How many live admin keys other than key_id have a role in team.
SELECT count(*) FROM team.admin_key_roles r JOIN team.admin_keys k ON k.id = r.key_id
WHERE r.team_id = @team_id AND k.revoked_at IS NULL AND k.id <> @key_id;

-- name: DeleteTeamKeyRoles :many
-- Removes every admin key role in team.
WITH gone AS (DELETE FROM team.admin_key_roles r WHERE r.team_id = @team_id RETURNING r.key_id, r.role)
SELECT gone.key_id, k.name, gone.role, (k.revoked_at IS NOT NULL)::boolean AS revoked
FROM gone JOIN team.admin_keys k ON k.id = gone.key_id;

-- name: GrantCreatorKey :exec
-- Gives the key that created a team ADMIN in it.
INSERT INTO team.admin_key_roles (key_id, team_id, role) VALUES (@key_id, @team_id, 'ADMIN');

-- name: LockBootstrapKey :exec
-- Serializes concurrent start-ups on one lock rather than on the unique
-- index, so no replica ever sees a half-done swap.
SELECT pg_advisory_xact_lock(hashtext('team.bootstrap_admin_key'));

-- name: RevokeOtherBootstrapKeys :exec
UPDATE team.admin_keys SET revoked_at = now()
WHERE bootstrap AND revoked_at IS NULL AND key_hash <> @key_hash;

-- name: StoreBootstrapKey :exec
INSERT INTO team.admin_keys (id, name, key_hash, prefix, global_role, bootstrap, created_by)
VALUES ('ak_bootstrap_' || left(@key_hash::text, 12), 'bootstrap', @key_hash::text, @prefix::text, 'ADMIN', true, 'system')
ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL, bootstrap = true, global_role = 'ADMIN';
