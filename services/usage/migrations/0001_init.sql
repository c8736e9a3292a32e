-- Usage service schema, version 1: raw usage events partitioned by day, and
-- the hourly and daily rollups every dashboard reads.
--
-- Partitions of usage.events (usage.events_pYYYYMMDD, one per UTC day) are
-- created and dropped by the service (partitions.go), never here: days ahead
-- by the maintenance loop, a past day on demand when a late event needs it,
-- and days older than USAGE_RETENTION_DAYS dropped.

CREATE SEQUENCE usage.events_id_seq;

-- One row per forwarded edge request (contract §2.3 token_usage_logs, plus
-- the event id, the resolved token and team, and the receive time).
CREATE TABLE usage.events (
    -- event_id deduplicates retries: the Worker's event_id, or a hash of the
    -- canonical event when it sent none. Unique together with used_at, the
    -- partition key (a retry carries the same event, hence the same time).
    event_id         text        NOT NULL,
    used_at          timestamptz NOT NULL,
    id               bigint      NOT NULL DEFAULT nextval('usage.events_id_seq'),
    received_at      timestamptz NOT NULL DEFAULT now(),
    token_hash       text        NOT NULL,
    token_id         bigint      NOT NULL,
    team_id          text        NOT NULL,
    route_path       text,
    response_status  integer,
    response_time_ms integer,
    ip_address       text,
    user_agent       text,
    request_method   text,
    error_message    text,
    CONSTRAINT events_event_id_used_at_key UNIQUE (event_id, used_at)
) PARTITION BY RANGE (used_at);

-- Newest-first lists (recent_logs, recent_usage, usage_logs) read these,
-- LIMIT n; totals never read raw events.
CREATE INDEX events_used_at_idx ON usage.events (used_at DESC);
CREATE INDEX events_team_used_at_idx ON usage.events (team_id, used_at DESC);
CREATE INDEX events_token_used_at_idx ON usage.events (token_id, used_at DESC);
CREATE INDEX events_route_used_at_idx ON usage.events (route_path, used_at DESC);

-- Rollups: per UTC day, token hash, route and status class (the token ×
-- route breakdowns: route_distribution, token_distribution). status_class is the first digit of the status (1..5), 0 when the
-- event had none; route_path '' stands for an event without a route.
-- hist counts latencies per fixed bucket (histogram.go: latencyBounds),
-- enough for p50/p95/p99. They are maintained in the transaction that
-- inserts the events, from the rows actually inserted (never duplicates).
CREATE TABLE usage.rollup_daily (
    day           date        NOT NULL,
    token_hash    text        NOT NULL,
    route_path    text        NOT NULL,
    status_class  smallint    NOT NULL,
    token_id      bigint      NOT NULL,
    team_id       text        NOT NULL,
    calls         bigint      NOT NULL,
    errors        bigint      NOT NULL,
    latency_sum   bigint      NOT NULL,
    latency_count bigint      NOT NULL,
    latency_max   integer     NOT NULL,
    hist          bigint[]    NOT NULL,
    first_used    timestamptz NOT NULL,
    last_used     timestamptz NOT NULL,
    PRIMARY KEY (day, token_hash, route_path, status_class)
);
CREATE INDEX rollup_daily_team_idx ON usage.rollup_daily (team_id, day);
CREATE INDEX rollup_daily_token_idx ON usage.rollup_daily (token_id, day);
CREATE INDEX rollup_daily_route_idx ON usage.rollup_daily (route_path, day);

-- The same figures per single dimension, hourly and daily, for the
-- dashboards (totals, series, top lists, percentiles, anomalies): per team (the
-- overview and hourly series), per token, per route and team, and per route
-- over all teams (a global ADMIN's view), each hourly ('h') and daily ('d').
-- A dashboard then reads a few thousand rows whatever the traffic, instead
-- of every token × route combination. bucket is the hour or the UTC
-- midnight; key is the team id, the token id, or the route path ('' for
-- none); team_id is '' for 'route_all'.
CREATE TABLE usage.rollup_dim (
    kind          "char"      NOT NULL CHECK (kind IN ('h', 'd')),
    dim           text        NOT NULL CHECK (dim IN ('team', 'token', 'route', 'route_all')),
    key           text        NOT NULL,
    bucket        timestamptz NOT NULL,
    team_id       text        NOT NULL,
    status_class  smallint    NOT NULL,
    calls         bigint      NOT NULL,
    errors        bigint      NOT NULL,
    latency_sum   bigint      NOT NULL,
    latency_count bigint      NOT NULL,
    latency_max   integer     NOT NULL,
    hist          bigint[]    NOT NULL,
    first_used    timestamptz NOT NULL,
    last_used     timestamptz NOT NULL,
    PRIMARY KEY (kind, dim, key, bucket, team_id, status_class)
);
CREATE INDEX rollup_dim_bucket_idx ON usage.rollup_dim (kind, dim, bucket);
