-- 000030: the view attempt_history, every recorded attempt at an event: its failures and late
-- successes from attempts, and the success its delivered row records (000028).
--
-- Locks: none on tables (a view added, grant_worker_role replaced, 000029's workers_from
-- corrected). None on application tables.
--
-- Why: since 000028 an event's history is in two places, and the console, DBAs and anyone who
-- reads the history for an audit each had to write the union. The view is that union; a
-- condition on subscription_id and event_id reaches both of its parts (attempts_delivery and the
-- primary key of deliveries). A success recorded on its row has no worker and no attempt id.

CREATE VIEW trigger_events.attempt_history AS
SELECT a.subscription_id, a.event_id, a.attempt, a.started_at, a.duration_ms, a.http_status, a.error,
       a.response_excerpt, a.webhook_id, a.worker, a.id AS attempt_id
FROM trigger_events.attempts a
UNION ALL
SELECT d.subscription_id, d.event_id, d.attempts, d.last_started_at, d.last_duration_ms, d.last_status, NULL,
       NULL, d.last_webhook_id, NULL, NULL
FROM trigger_events.deliveries d
WHERE d.status = 'delivered' AND d.last_started_at IS NOT NULL;
COMMENT ON VIEW trigger_events.attempt_history IS
    'Every recorded attempt at an event: the rows of attempts, and the success a delivered row records (last_started_at, 000028), which has no worker and no attempt_id.';
REVOKE ALL ON trigger_events.attempt_history FROM PUBLIC;

-- 000028's function, with attempt_history.
CREATE OR REPLACE FUNCTION trigger_events.grant_worker_role(role_name name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA trigger_events TO %I', role_name);
    EXECUTE format('GRANT SELECT ON trigger_events.migrations, trigger_events.event_triggers, trigger_events.triggers, '
                   'trigger_events.subscription_status, trigger_events.attempt_history TO %I', role_name);
    -- A role set up by an earlier deploy/worker-role.sql had DELETE on the log: taken back.
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON trigger_events.event_log FROM %I', role_name);
    EXECUTE format('GRANT SELECT ON trigger_events.event_log TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON trigger_events.deliveries TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON trigger_events.subscriptions TO %I', role_name);
    -- Each subscription's place in the log: made when a subscription is registered, moved by
    -- the fan-out at the head of the worker's claims.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON trigger_events.subscription_positions TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON trigger_events.attempts TO %I', role_name);
    -- Per minute (000028): added to by each result write, pruned by the workers.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON trigger_events.attempt_counts TO %I', role_name);
    EXECUTE format('GRANT SELECT, UPDATE ON trigger_events.worker_signal TO %I', role_name);
    -- The idle flag's hint for capture (000015), read and set beside the flag.
    EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE trigger_events.worker_idle_hint TO %I', role_name);
    -- Each group's retention bounds (000022), recorded by its worker at start, read by retention.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON trigger_events.group_retention TO %I', role_name);
    -- subscription_status_rows(text) (000025): one group's status, for its backlog gauges.
    -- moved_reason() (000027): a worker does not start on a database moved here until migrate
    -- has repaired it.
    EXECUTE format('GRANT EXECUTE ON FUNCTION trigger_events.fan_out(int[], int), '
                   'trigger_events.fan_out(int[], int, int, uuid, timestamptz), '
                   'trigger_events.subscription_status_rows(), trigger_events.subscription_status_rows(text), '
                   'trigger_events.delete_subscription(text), '
                   'trigger_events.delete_delivered_events(bigint[]), trigger_events.moved_reason() TO %I', role_name);
    -- The fan-out, replay and dead retry number the deliveries of ordered subscriptions (000008).
    EXECUTE format('GRANT USAGE ON SEQUENCE trigger_events.delivery_order TO %I', role_name);
END
$$;

-- 000029 declared that it keeps workers of schema 28 and later, but it replaced only the body of
-- fan_out, whose signature, settings and results are those that workers of schema 27 call too:
-- a worker of schema 27, which 000028 keeps, stopped at its start on a database at 29. It runs
-- on 29 and on this schema, as it does on 28.
UPDATE trigger_events.migrations SET workers_from = 27 WHERE version = 29;
UPDATE trigger_events.migrations SET workers_from = 27 WHERE version = 30;
