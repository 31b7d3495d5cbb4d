-- The rights of the role the worker logs in as (TRIGGER_EVENTS_DATABASE_URL of the
-- triggerevents-worker Secret, or of the compose worker): what delivery, registration, the
-- metrics, retention and the operator commands need, and nothing that changes the schema or a
-- captured event. `triggerevents migrate` grants them itself to a role named
-- trigger_events_worker when it exists, at every upgrade; this file is for a role created after
-- migrate, or named otherwise. Run it as the schema owner, for example:
--   CREATE ROLE trigger_events_worker LOGIN PASSWORD '...';
--   psql -v ON_ERROR_STOP=1 -f deploy/worker-role.sql
-- A command that lacks one of these rights says which GRANT is missing.
SELECT trigger_events.grant_worker_role('trigger_events_worker');
