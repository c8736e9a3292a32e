-- name: LockChainHead :one
-- The newest event's id and hash, locked until the end of the transaction:
-- appends hold this lock, which serializes them, so the chain never forks.
SELECT last_id, last_hash FROM audit.chain_head FOR UPDATE;

-- name: ChainHead :one
-- The newest event's id (ids are gapless: the number of events) and hash.
SELECT last_id, last_hash FROM audit.chain_head;

-- name: MoveChainHead :exec
UPDATE audit.chain_head SET last_id = @last_id, last_hash = @last_hash, updated_at = now();

-- name: StoredEventIDs :many
-- Which of the given event ids are stored already.
SELECT event_id FROM audit.events WHERE event_id = ANY(@event_ids::text[]);

-- name: InsertEvents :copyfrom
-- Appends events whose ids, links and hashes the caller computed.
INSERT INTO audit.events (id, event_id, occurred_at, recorded_at, actor_type, actor_id, actor_email, actor_name,
    action, entity_type, entity_id, team_id, details, request_id, client_ip, user_agent, prev_hash, hash)
VALUES (@id, @event_id, @occurred_at, @recorded_at, @actor_type, @actor_id, @actor_email, @actor_name,
    @action, @entity_type, @entity_id, @team_id, @details, @request_id, @client_ip, @user_agent, @prev_hash, @hash);

-- name: EventsAfter :many
-- Up to n events with id above after and at most up_to, oldest first: the
-- chain in order, a page at a time.
SELECT id, event_id, occurred_at, recorded_at, actor_type, actor_id, actor_email, actor_name,
    action, entity_type, entity_id, team_id, details, request_id, client_ip, user_agent, prev_hash, hash
FROM audit.events
WHERE id > @after AND id <= @up_to
ORDER BY id
LIMIT @n;
