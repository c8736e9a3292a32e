-- name: Membership :one
SELECT role FROM team.memberships WHERE user_id = @user_id AND team_id = @team_id;

-- name: UpsertMembership :exec
INSERT INTO team.memberships (user_id, team_id, role, created_by) VALUES (@user_id, @team_id, @role, @created_by)
ON CONFLICT (user_id, team_id) DO UPDATE SET role = EXCLUDED.role, updated_at = now();

-- name: AddMembershipIfAbsent :execrows
INSERT INTO team.memberships (user_id, team_id, role, created_by) VALUES (@user_id, @team_id, @role, @created_by)
ON CONFLICT (user_id, team_id) DO NOTHING;

-- name: DeleteMembership :exec
DELETE FROM team.memberships WHERE user_id = @user_id AND team_id = @team_id;

-- name: CountAdmins :one
SELECT count(*) FROM team.memberships WHERE team_id = @team_id AND role = 'ADMIN';

-- name: CountMembersBesides :one
-- The members of a team other than user, and whether user is one (0 or 1).
SELECT count(*) FILTER (WHERE user_id <> @user_id::text) AS others,
       count(*) FILTER (WHERE user_id = @user_id::text) AS user_member
FROM team.memberships WHERE team_id = @team_id;

-- name: TeamMembers :many
-- The members of a team, highest role first, with what the users cache
-- knows of them.
SELECT m.user_id, m.role, (u.user_id IS NOT NULL)::boolean AS cached, u.email, u.first_name, u.last_name, u.image_url,
       u.last_sign_in_ms, COALESCE(u.created_ms, 0)::bigint AS created_ms,
       COALESCE(u.refreshed_at, 'epoch')::timestamptz AS refreshed_at
FROM team.memberships m LEFT JOIN team.users u ON u.user_id = m.user_id
WHERE m.team_id = @team_id
ORDER BY array_position(ARRAY['ADMIN','MANAGER','DEVELOPER','VIEWER'], m.role), m.created_at, m.user_id;

-- name: UserMemberships :many
SELECT team_id, role FROM team.memberships WHERE user_id = @user_id;

-- name: MembershipsOfUsers :many
SELECT user_id, team_id, role FROM team.memberships WHERE user_id = ANY(@user_ids::text[]);
