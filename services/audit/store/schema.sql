-- For sqlc only: tmctl migrate creates the schema before it applies
-- migrations/, which therefore never say CREATE SCHEMA.
CREATE SCHEMA audit;
