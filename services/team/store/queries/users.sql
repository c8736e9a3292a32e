-- name: CachedUser :one
SELECT email, first_name, last_name, image_url, last_sign_in_ms, created_ms, refreshed_at
FROM team.users WHERE user_id = @user_id;

-- name: UpsertUsers :many
-- Refreshes the cache with users (a JSON array of objects with the fields
-- below); inserted is true for the ids it had never seen before.
INSERT INTO team.users AS u (user_id, email, first_name, last_name, image_url, last_sign_in_ms, created_ms)
SELECT x."ID", x."Email", x."FirstName", x."LastName", x."ImageURL", x."LastSignInMs", x."CreatedMs"
  FROM jsonb_to_recordset(@users::jsonb) AS x("ID" text, "Email" text, "FirstName" text, "LastName" text,
       "ImageURL" text, "LastSignInMs" bigint, "CreatedMs" bigint)
ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, first_name = EXCLUDED.first_name,
   last_name = EXCLUDED.last_name, image_url = EXCLUDED.image_url,
   last_sign_in_ms = EXCLUDED.last_sign_in_ms, created_ms = EXCLUDED.created_ms, refreshed_at = now()
RETURNING u.user_id, (xmax = 0)::boolean AS inserted;

-- name: TouchUser :exec
-- Keeps a stale profile for another TTL.
UPDATE team.users SET refreshed_at = now() WHERE user_id = @user_id;
