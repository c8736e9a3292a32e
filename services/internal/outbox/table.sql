-- The transactional outbox of one service schema: see package
-- services/internal/outbox. To add it to a service, copy this file into the
-- service's migrations as NNNN_outbox.sql and replace __SCHEMA__ with the
-- schema name (outbox.TableSQL does the same).
--
-- Rows are inserted by outbox.Enqueue in the transaction of the change they
-- announce, and deleted once delivered.
CREATE TABLE __SCHEMA__.outbox (
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
CREATE INDEX outbox_next_attempt_at_id_idx ON __SCHEMA__.outbox (next_attempt_at, id);

-- Relays hold a row back while an older one with the same topic and key is
-- pending; this index answers that question.
CREATE INDEX outbox_topic_key_id_idx ON __SCHEMA__.outbox (topic, key, id) WHERE key <> '';
