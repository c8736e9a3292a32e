-- Team service schema, version 2: what the team service learns from Clerk.
--
-- users caches the Clerk profile of every user seen (e-mail and name for
-- principals, audit actors and member lists), so that authentication does
-- not call Clerk on every request as v2.7 did. seen_at marks "first
-- appeared": pending invitation roles are applied then.
CREATE TABLE team.users (
    user_id         text PRIMARY KEY CHECK (char_length(user_id) BETWEEN 1 AND 100),
    email           text,
    first_name      text,
    last_name       text,
    image_url       text,
    last_sign_in_ms bigint,
    created_ms      bigint NOT NULL DEFAULT 0,
    seen_at         timestamptz NOT NULL DEFAULT now(),
    refreshed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_email_idx ON team.users (lower(email));

-- Invitations sent through Clerk, with the team roles they grant. Clerk
-- also copies the roles into the user's publicMetadata when the invitation
-- is accepted, but PostgreSQL is the source of truth: the roles are applied
-- here when a user with this e-mail first appears.
CREATE TABLE team.invitations (
    id          text PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 100),
    email       text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    team_roles  jsonb NOT NULL DEFAULT '{}',
    invited_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    applied_at  timestamptz,
    applied_to  text,
    revoked_at  timestamptz
);
CREATE INDEX invitations_pending_email_idx ON team.invitations (lower(email))
    WHERE applied_at IS NULL AND revoked_at IS NULL;
