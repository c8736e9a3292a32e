-- name: LockTeam :one
-- Locks (creating it if need be) a team's registry row for the rest of the
-- transaction and says whether the team is retired.
INSERT INTO token.team_registry (team_id) VALUES (@team_id)
ON CONFLICT (team_id) DO UPDATE SET team_id = EXCLUDED.team_id
RETURNING (retired_at IS NOT NULL)::bool AS retired;

-- name: CountLiveTeamTokens :one
SELECT count(*) FROM token.tokens WHERE team_id = @team_id AND revoked_at IS NULL;

-- name: RetireTeam :exec
UPDATE token.team_registry SET retired_at = coalesce(retired_at, now()) WHERE team_id = @team_id;

-- name: RevokeTeamTokens :many
-- Revokes every live token of a team; returns their ids and names.
UPDATE token.tokens SET revoked_at = now(), revoked_by = @revoked_by, rotation_grace_ends_at = NULL, updated_at = now()
WHERE team_id = @team_id AND revoked_at IS NULL
RETURNING id, name;
