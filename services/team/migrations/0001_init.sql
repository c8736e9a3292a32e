-- Team service schema, version 1: teams, memberships and roles (the source of
-- truth; Clerk publicMetadata only mirrors them), admin API keys, and the
-- outbox that carries audit events and Clerk metadata updates.

CREATE TABLE team.teams (
    id          text PRIMARY KEY
                CHECK (char_length(id) BETWEEN 1 AND 50 AND id ~ '^[a-z0-9][a-z0-9_-]*$'),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    color       text NOT NULL DEFAULT '#3b82f6' CHECK (color ~ '^#[0-9a-fA-F]{6}$'),
    icon        text NOT NULL DEFAULT '' CHECK (char_length(icon) <= 10),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- core-team manages routes (contract §5.3); it exists from the start.
INSERT INTO team.teams (id, name, description, color, icon, created_by)
VALUES ('core-team', 'Core Team', '核心基礎設施團隊 - 負責管理路由、系統設定等核心功能', '#8b5cf6', '⚙️', 'system');

-- A person's role in a team. ON DELETE RESTRICT: a team with members cannot
-- be deleted by accident.
CREATE TABLE team.memberships (
    user_id    text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 100),
    team_id    text NOT NULL REFERENCES team.teams (id) ON DELETE RESTRICT,
    role       text NOT NULL CHECK (role IN ('ADMIN', 'MANAGER', 'DEVELOPER', 'VIEWER')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, team_id)
);
CREATE INDEX memberships_team_idx ON team.memberships (team_id);

-- Global roles of people (only ADMIN has a meaning).
CREATE TABLE team.global_roles (
    user_id    text PRIMARY KEY CHECK (char_length(user_id) BETWEEN 1 AND 100),
    role       text NOT NULL CHECK (role = 'ADMIN'),
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by text NOT NULL DEFAULT ''
);

-- Admin API keys: stored as the SHA-256 of the key, never the key.
CREATE TABLE team.admin_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    key_hash     text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    prefix       text NOT NULL,
    global_role  text NOT NULL DEFAULT '' CHECK (global_role IN ('', 'ADMIN')),
    bootstrap    boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL DEFAULT '',
    last_used_at timestamptz,
    revoked_at   timestamptz
);
-- At most one live bootstrap key.
CREATE UNIQUE INDEX admin_keys_one_bootstrap_idx ON team.admin_keys (bootstrap) WHERE bootstrap AND revoked_at IS NULL;

CREATE TABLE team.admin_key_roles (
    key_id  text NOT NULL REFERENCES team.admin_keys (id) ON DELETE CASCADE,
    team_id text NOT NULL REFERENCES team.teams (id) ON DELETE RESTRICT,
    role    text NOT NULL CHECK (role IN ('ADMIN', 'MANAGER', 'DEVELOPER', 'VIEWER')),
    PRIMARY KEY (key_id, team_id)
);

-- Transactional outbox (see services/internal/outbox).
CREATE TABLE team.outbox (
    id              bigserial   PRIMARY KEY,
    topic           text        NOT NULL,
    key             text        NOT NULL DEFAULT '',
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);

-- Relays claim due rows in this order.
CREATE INDEX outbox_next_attempt_at_id_idx ON team.outbox (next_attempt_at, id);

-- Relays hold a row back while an older one with the same topic and key is
-- pending; this index answers that question.
CREATE INDEX outbox_topic_key_id_idx ON team.outbox (topic, key, id) WHERE key <> '';
