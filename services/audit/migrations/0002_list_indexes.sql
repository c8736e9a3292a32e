-- Audit service schema, version 2: indexes for the filter combinations the
-- audit-log page uses, measured with BenchmarkListAuditLogs1M* (bench_test.go)
-- on a million events.
--
-- entity_type + action (the page's two drop-downs together): with one index
-- per column the planner multiplies their selectivities, walks the primary
-- key backwards hoping to meet 50 matches soon, and for a rare or absent
-- pair reads the whole table (0.4-3.5 s). One index over both, ending in
-- id, answers the page as a backward range scan and the count as an
-- index-only range scan, whatever the pair's frequency.
CREATE INDEX events_entity_type_action_idx ON audit.events (entity_type, action, id);

-- A member's reads are scoped by team (team_id = ANY(...)); with an action
-- filter the count was a BitmapAnd of two large bitmaps. One index over
-- team and action makes it an index-only scan of the matching entries.
CREATE INDEX events_team_id_action_idx ON audit.events (team_id, action, id);

-- Entity types and actions are correlated (rotate and reveal happen to
-- tokens only): extended statistics give the planner the real frequency of
-- each pair instead of the product of the two, for the plans above and for
-- the estimated totals of large results (store.go, Count).
CREATE STATISTICS audit.events_entity_type_action_stats (dependencies, mcv) ON entity_type, action FROM audit.events;
ANALYZE audit.events;
