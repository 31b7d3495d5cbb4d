-- The rights of the role the worker logs in as (TRIGGER_EVENTS_DATABASE_URL of the
-- triggerevents-worker Secret, or of the compose worker): what delivery, registration, the
-- metrics and retention need, and nothing that changes the schema. Run it as the schema owner
-- after `triggerevents migrate`, once the role exists, for example:
--   CREATE ROLE triggerevents_worker LOGIN PASSWORD '...';
--   psql -v ON_ERROR_STOP=1 -f deploy/worker-role.sql
-- Run it again after an upgrade that adds tables. A command that lacks one of these says which
-- GRANT is missing.
GRANT USAGE ON SCHEMA trigger_events TO triggerevents_worker;
GRANT SELECT ON trigger_events.migrations, trigger_events.event_triggers,
                trigger_events.triggers, trigger_events.subscription_status TO triggerevents_worker;
-- DELETE: retention deletes delivered events after retention.delivered_events.
GRANT SELECT, DELETE ON trigger_events.event_log TO triggerevents_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON trigger_events.deliveries TO triggerevents_worker;
GRANT SELECT, INSERT, UPDATE ON trigger_events.subscriptions TO triggerevents_worker;
-- Each subscription's place in the log: made when a subscription is registered, moved by the
-- fan-out, which turns committed events into deliveries at the head of the worker's claims.
GRANT SELECT, INSERT, UPDATE ON trigger_events.subscription_positions TO triggerevents_worker;
GRANT EXECUTE ON FUNCTION trigger_events.fan_out(int[], int) TO triggerevents_worker;
-- subscription_status reads its rows through this function (status, the backlog gauges).
GRANT EXECUTE ON FUNCTION trigger_events.subscription_status_rows() TO triggerevents_worker;
GRANT SELECT, INSERT, DELETE ON trigger_events.attempts TO triggerevents_worker;
GRANT SELECT, UPDATE ON trigger_events.worker_signal TO triggerevents_worker;
