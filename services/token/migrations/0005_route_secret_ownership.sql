-- Token service schema, version 5: a backend credential belongs to its route.
--
-- Until now a secret's name was global (secret:<name> in KV) and a route's
-- auth config could name any of them — another route's credential, or (in
-- the Worker) any env binding — and send it to a host of its author's
-- choosing. From this version a secret is identified by its route and its
-- name: two routes may each hold an OPENAI_API_KEY, a route's config can only
-- name secrets the route itself holds, and KV publishes the secret under a
-- name derived from the route's path, secret:<path>#<name>, which is also
-- what the routes map's *_ref fields name (see kvstate.go). The v2.7 Worker
-- reads whatever a *_ref names, so it keeps working; this project's Worker
-- resolves only names that carry its route's path.
ALTER TABLE token.route_secrets DROP CONSTRAINT route_secrets_pkey;
ALTER TABLE token.route_secrets ADD PRIMARY KEY (route_id, name);
DROP INDEX token.route_secrets_route_idx; -- the primary key leads with route_id

-- Values were sealed with their old KV key (secret:<name>) as associated
-- data. They stay readable under it until the route's next secret write
-- seals them again under the new key.
ALTER TABLE token.route_secrets ADD COLUMN sealed_as_legacy boolean NOT NULL DEFAULT false;
UPDATE token.route_secrets SET sealed_as_legacy = true;

-- Every existing secret moves to its new KV key: the next sync writes
-- secret:<path>#<name>, then the routes map naming it, then deletes
-- secret:<name>.
INSERT INTO token.outbox (topic, key, payload)
SELECT 'kv', 'secret:' || r.path || '#' || s.name, '{}'::jsonb
FROM token.route_secrets s JOIN token.routes r ON r.id = s.route_id;
INSERT INTO token.outbox (topic, key, payload)
SELECT 'kv', 'routes', '{}'::jsonb WHERE EXISTS (SELECT 1 FROM token.routes);
INSERT INTO token.outbox (topic, key, payload)
SELECT 'kv', 'secret:' || s.name, '{}'::jsonb FROM token.route_secrets s;
