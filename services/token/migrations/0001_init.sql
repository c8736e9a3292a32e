-- Token service schema, version 1: the outbox that carries KV changes and
-- audit events. Tokens, routes and secrets arrive with the token service.

CREATE TABLE token.outbox (
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
CREATE INDEX outbox_next_attempt_at_id_idx ON token.outbox (next_attempt_at, id);

-- Relays hold a row back while an older one with the same topic and key is
-- pending; this index answers that question.
CREATE INDEX outbox_topic_key_id_idx ON token.outbox (topic, key, id) WHERE key <> '';
