-- name: GlobalRole :one
SELECT role FROM team.global_roles WHERE user_id = @user_id;

-- name: GlobalRolesOfUsers :many
SELECT user_id, role FROM team.global_roles WHERE user_id = ANY(@user_ids::text[]);

-- name: GrantGlobalAdmin :execrows
-- Nothing (0 rows) when user already is a global ADMIN.
INSERT INTO team.global_roles (user_id, role, granted_by) VALUES (@user_id, 'ADMIN', @granted_by)
ON CONFLICT (user_id) DO NOTHING;

-- name: LockGlobalAdmins :many
-- Every global ADMIN, each row locked, in one order.
SELECT user_id FROM team.global_roles ORDER BY user_id FOR UPDATE;

-- name: DeleteGlobalRole :exec
DELETE FROM team.global_roles WHERE user_id = @user_id;

-- name: ListGlobalAdmins :many
-- Every global ADMIN, oldest grant first, with the cached e-mail.
SELECT g.user_id, u.email, g.granted_at, g.granted_by
FROM team.global_roles g LEFT JOIN team.users u ON u.user_id = g.user_id
ORDER BY g.granted_at, g.user_id;
