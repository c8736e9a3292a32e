-- Audit service schema, version 1: the append-only, hash-chained audit trail.
--
-- Every row carries the SHA-256 of the previous row (prev_hash) and its own
-- hash over a canonical encoding of its stored fields (see chain.go), so a
-- changed, inserted or deleted row breaks the chain and VerifyChain finds it.
-- Ids are assigned by the service from chain_head (not a sequence), so they
-- are gapless: a deleted row shows as a missing id, and the newest id is the
-- number of events.

CREATE TABLE audit.events (
    id          bigint      PRIMARY KEY CHECK (id > 0),
    -- event_id is the writer's id of the event; Record is idempotent by it.
    event_id    text        NOT NULL UNIQUE CHECK (char_length(event_id) BETWEEN 1 AND 128),
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    actor_type  text        NOT NULL CHECK (actor_type IN ('user', 'admin_key', 'service', 'system')),
    actor_id    text        NOT NULL DEFAULT '' CHECK (char_length(actor_id) <= 128),
    actor_email text        NOT NULL DEFAULT '' CHECK (char_length(actor_email) <= 320),
    actor_name  text        NOT NULL DEFAULT '' CHECK (char_length(actor_name) <= 200),
    action      text        NOT NULL CHECK (char_length(action) BETWEEN 1 AND 64),
    entity_type text        NOT NULL CHECK (char_length(entity_type) BETWEEN 1 AND 64),
    entity_id   text        NOT NULL DEFAULT '' CHECK (char_length(entity_id) <= 128),
    -- team_id is '' for events that belong to no team (routes, admin keys, global roles).
    team_id     text        NOT NULL DEFAULT '' CHECK (char_length(team_id) <= 64),
    details     jsonb       NOT NULL CHECK (jsonb_typeof(details) = 'object'),
    request_id  text        NOT NULL DEFAULT '' CHECK (char_length(request_id) <= 128),
    client_ip   text        NOT NULL DEFAULT '' CHECK (char_length(client_ip) <= 64),
    user_agent  text        NOT NULL DEFAULT '' CHECK (char_length(user_agent) <= 512),
    prev_hash   text        NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash        text        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);

-- Lists are ordered by id DESC (recording order, a close proxy for time) and
-- filtered by these columns; each index ends in id so that a filtered page
-- is an index range scan in the right order.
CREATE INDEX events_team_id_idx     ON audit.events (team_id, id);
CREATE INDEX events_action_idx      ON audit.events (action, id);
CREATE INDEX events_entity_type_idx ON audit.events (entity_type, id);
CREATE INDEX events_actor_id_idx    ON audit.events (actor_id, id);
CREATE INDEX events_actor_email_idx ON audit.events (lower(actor_email), id);
CREATE INDEX events_occurred_at_idx ON audit.events (occurred_at);

-- The chain head: the newest event's id and hash. Appends lock this one row
-- (SELECT ... FOR UPDATE), which serializes them, so the chain never forks.
-- It also lets VerifyChain notice events cut off the end of the chain.
CREATE TABLE audit.chain_head (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id    bigint      NOT NULL,
    last_hash  text        NOT NULL CHECK (last_hash ~ '^[0-9a-f]{64}$'),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit.chain_head (last_id, last_hash) VALUES (0, repeat('0', 64));

-- Append-only, enforced by the database for every role: rows can be
-- inserted, never updated, deleted or truncated. (Repairing this table on
-- purpose needs a superuser who disables the trigger or sets
-- session_replication_role = replica — which is also how the tamper tests
-- simulate an attacker; VerifyChain then reports the damage.)
CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON audit.events
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
