-- Token service schema, version 4: the token service's own record of which
-- team ids are retired (their team was deleted).
--
-- Team deletion and token creation happen in two services with two schemas,
-- so no single transaction covers both. This table is where they meet: every
-- CreateToken upserts its team's row (taking the row lock) in the transaction
-- that inserts the token, and RetireTeam (called by the team service before
-- it deletes a team) upserts the same row, counts the team's live tokens and
-- sets retired_at only when there are none. The row lock orders the two, so
-- either the token exists and the deletion is refused, or the team is retired
-- and the token is refused. A retired id is never revived.
CREATE TABLE token.team_registry (
    team_id    text PRIMARY KEY,
    retired_at timestamptz
);
