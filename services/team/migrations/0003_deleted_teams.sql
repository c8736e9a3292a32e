-- Team service schema, version 3: the ids of deleted teams.
--
-- A deleted team leaves history behind under its id: revoked tokens, usage,
-- audit events, links in the dashboard. Whoever created a team with the same
-- id would inherit that history (and, before the token service's team
-- registry, the team's tokens), so an id is never reused: CreateTeam refuses
-- an id that is listed here.
CREATE TABLE team.deleted_teams (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    deleted_by text NOT NULL
);
