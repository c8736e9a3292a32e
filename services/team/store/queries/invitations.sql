-- name: InsertInvitation :exec
INSERT INTO team.invitations (id, email, team_roles, invited_by) VALUES (@id, @email, @team_roles, @invited_by);

-- name: InvitationInviter :one
SELECT invited_by FROM team.invitations WHERE id = @id;

-- name: MarkInvitationRevoked :exec
UPDATE team.invitations SET revoked_at = now() WHERE id = @id AND revoked_at IS NULL;

-- name: Invitation :one
SELECT email, team_roles FROM team.invitations WHERE id = @id;

-- name: LockPendingInvitations :many
-- The pending invitations to any of emails (lower case) younger than
-- validity (an interval, such as '2592000 seconds'), oldest first, locked.
SELECT id, email, team_roles FROM team.invitations
WHERE lower(email) = ANY(@emails::text[]) AND applied_at IS NULL AND revoked_at IS NULL
  AND created_at > now() - (@validity::text)::interval
ORDER BY created_at FOR UPDATE;

-- name: MarkInvitationApplied :exec
UPDATE team.invitations SET applied_at = now(), applied_to = @applied_to WHERE id = @id;
