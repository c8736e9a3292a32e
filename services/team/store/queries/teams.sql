-- name: ListTeams :many
-- Every team (all_teams) or the teams with the given ids, newest first, with
-- member counts.
SELECT t.id, t.name, t.description, t.color, t.icon, t.created_by, t.created_at, t.updated_at,
       (SELECT count(*) FROM team.memberships m WHERE m.team_id = t.id)::bigint AS member_count
FROM team.teams t
WHERE @all_teams::boolean OR t.id = ANY(@ids::text[])
ORDER BY t.created_at DESC, t.id;

-- name: GetTeam :one
SELECT t.id, t.name, t.description, t.color, t.icon, t.created_by, t.created_at, t.updated_at,
       (SELECT count(*) FROM team.memberships m WHERE m.team_id = t.id)::bigint AS member_count
FROM team.teams t
WHERE t.id = @id;

-- name: LockTeam :one
-- GetTeam with a row lock that serializes the membership changes of the
-- team (last-ADMIN checks) and its deletion.
SELECT t.id, t.name, t.description, t.color, t.icon, t.created_by, t.created_at, t.updated_at,
       (SELECT count(*) FROM team.memberships m WHERE m.team_id = t.id)::bigint AS member_count
FROM team.teams t
WHERE t.id = @id
FOR UPDATE OF t;

-- name: InsertTeam :execrows
-- Inserts nothing (0 rows) when id belonged to a deleted team.
INSERT INTO team.teams (id, name, description, color, icon, created_by)
SELECT @id::text, @name::text, @description::text, @color::text, @icon::text, @created_by::text
WHERE NOT EXISTS (SELECT 1 FROM team.deleted_teams d WHERE d.id = @id::text);

-- name: UpdateTeam :execrows
-- A null argument leaves its field as it is.
UPDATE team.teams SET
    name = COALESCE(sqlc.narg(name), name), description = COALESCE(sqlc.narg(description), description),
    color = COALESCE(sqlc.narg(color), color), icon = COALESCE(sqlc.narg(icon), icon), updated_at = now()
WHERE id = @id;

-- name: DeleteTeam :exec
-- Deletes a team whose memberships and key roles are gone and keeps its id
-- in team.deleted_teams, so that it is never given to a new team.
WITH gone AS (DELETE FROM team.teams t WHERE t.id = @id RETURNING t.id, t.name)
INSERT INTO team.deleted_teams (id, name, deleted_by) SELECT gone.id, gone.name, @deleted_by::text FROM gone
ON CONFLICT (id) DO NOTHING;

-- name: ExistingTeams :many
SELECT id FROM team.teams WHERE id = ANY(@ids::text[]);

-- name: CountTeams :one
SELECT count(*) FROM team.teams;

-- name: TeamsByID :many
SELECT id, name, description, color, icon, created_by, created_at, updated_at
FROM team.teams WHERE id = ANY(@ids::text[]) ORDER BY id;
