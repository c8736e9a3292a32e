-- The partitions of usage.events. Their DDL names a table, which no
-- parameter can: CreatePartition and DropPartition are in partitions.go.

-- name: LockPartitionDDL :exec
-- LockPartitionDDL serialises partition DDL across instances, until the
-- transaction ends. The key spells "usage_p".
SELECT pg_advisory_xact_lock(33059434458865520);

-- name: EventPartitions :many
SELECT c.relname::text AS name
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'usage.events'::regclass;
