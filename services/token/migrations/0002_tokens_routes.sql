-- Token service schema, version 2: tokens and their secrets, routes and
-- their backend credentials.

-- A token is the identity that usage and audit refer to; its secrets (the
-- strings callers send) are in token_secrets, so a rotation adds a secret
-- without changing the token. Revocation sets revoked_at: the row stays, so
-- usage and audit history still resolve it.
CREATE TABLE token.tokens (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    team_id     text        NOT NULL CHECK (char_length(team_id) BETWEEN 1 AND 50),
    created_by  text        NOT NULL DEFAULT '',
    description text        NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    scopes      text[]      NOT NULL CHECK (cardinality(scopes) >= 1),
    -- preview is the masked form of the current secret (first 12 + last 6).
    preview     text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    last_used   timestamptz,
    revoked_at  timestamptz,
    revoked_by  text
);
CREATE INDEX tokens_live_team_created_idx ON token.tokens (team_id, created_at DESC) WHERE revoked_at IS NULL;
CREATE INDEX tokens_live_created_idx ON token.tokens (created_at DESC) WHERE revoked_at IS NULL;

-- The secrets of a token, by lookup hash. The current secret has
-- valid_until NULL; a rotated-out one works until valid_until (grace end).
-- kv_removed_at is set once the removal of token:<hash> from KV has been
-- enqueued (expiry, grace end or revocation), so the sweep does it once.
CREATE TABLE token.token_secrets (
    hash          text        PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
    token_id      bigint      NOT NULL REFERENCES token.tokens (id),
    -- ciphertext: keyring format, or v2.7's base64url(Fernet); NULL when
    -- the plaintext was never stored (KV-imported v2.7 tokens).
    ciphertext    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    valid_until   timestamptz,
    kv_removed_at timestamptz
);
CREATE INDEX token_secrets_token_idx ON token.token_secrets (token_id);
-- At most one current secret per token.
CREATE UNIQUE INDEX token_secrets_one_current_idx ON token.token_secrets (token_id) WHERE valid_until IS NULL;
CREATE INDEX token_secrets_kv_live_idx ON token.token_secrets (token_id) WHERE kv_removed_at IS NULL;

-- Routes: the edge's routing table (contract §2.2), global, managed by core-team.
CREATE TABLE token.routes (
    id                  bigserial   PRIMARY KEY,
    name                text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    path                text        NOT NULL UNIQUE CHECK (char_length(path) BETWEEN 2 AND 255 AND path LIKE '/%'),
    backend_url         text        NOT NULL CHECK (char_length(backend_url) BETWEEN 1 AND 2048),
    description         text        NOT NULL DEFAULT '' CHECK (char_length(description) <= 1000),
    tags                text[]      NOT NULL DEFAULT '{}',
    backend_auth_type   text        NOT NULL DEFAULT 'none' CHECK (backend_auth_type IN ('none', 'bearer', 'api-key', 'basic')),
    -- reference names only (token_ref, key_ref, header_name, username_ref, password_ref).
    backend_auth_config jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX routes_tags_idx ON token.routes USING gin (tags);

-- Backend credentials, pushed to KV as secret:<name>. A name belongs to
-- exactly one route; the value is stored only encrypted (keyring format).
CREATE TABLE token.route_secrets (
    name       text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_]{1,64}$'),
    route_id   bigint      NOT NULL REFERENCES token.routes (id),
    ciphertext text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX route_secrets_route_idx ON token.route_secrets (route_id);

-- Partial index for the KV relay's per-topic depth (sync status).
CREATE INDEX outbox_topic_created_idx ON token.outbox (topic, created_at);
