-- 000022: each group's retention bounds are recorded, and no run deletes what another group keeps.
--
-- Locks: none on existing tables (a new table; grant_worker_role() replaced, its owner and
-- grants kept). No lock on application tables. The worker's role gets SELECT, INSERT and UPDATE
-- on the new table.
--
-- Why: retention ran database-wide under the bounds of whichever worker held its lock. Two teams'
-- workers on one database, one with `delivered_events: 7d` and one with `forever` for its audit
-- trail, took turns: the first deleted, after 7 days, the delivered events of a trigger both
-- subscribe to, and the attempt records of the second team's subscriptions, which its file keeps
-- forever. Now a worker records its group's bounds here when it starts, and a run (a worker's
-- or `cleanup`'s) keeps an event as long as any other group with a subscription on its trigger
-- keeps it, and an attempt record as long as its subscription's group keeps it. The runner's own
-- group follows the run's bounds (its file, or cleanup's flags). A group that has not recorded
-- its bounds (its workers are of an earlier release) constrains nothing, as before.

CREATE TABLE trigger_events.group_retention (
    group_name       text        PRIMARY KEY CHECK (group_name ~ '^[A-Za-z0-9_-]{1,63}$'),
    -- retention.delivered_events and retention.attempts of the group's file; NULL: forever.
    delivered_events interval,
    attempts         interval,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trigger_events.group_retention IS
    'Each group''s retention bounds (NULL: forever), recorded by its worker at start; no retention run deletes what another group keeps.';
REVOKE ALL ON trigger_events.group_retention FROM PUBLIC;

-- 000015's function, with the new table's rights.
CREATE OR REPLACE FUNCTION trigger_events.grant_worker_role(role_name name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA trigger_events TO %I', role_name);
    EXECUTE format('GRANT SELECT ON trigger_events.migrations, trigger_events.event_triggers, trigger_events.triggers, '
                   'trigger_events.subscription_status TO %I', role_name);
    -- A role set up by an earlier deploy/worker-role.sql had DELETE on the log: taken back.
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON trigger_events.event_log FROM %I', role_name);
    EXECUTE format('GRANT SELECT ON trigger_events.event_log TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON trigger_events.deliveries TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON trigger_events.subscriptions TO %I', role_name);
    -- Each subscription's place in the log: made when a subscription is registered, moved by
    -- the fan-out at the head of the worker's claims.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON trigger_events.subscription_positions TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON trigger_events.attempts TO %I', role_name);
    EXECUTE format('GRANT SELECT, UPDATE ON trigger_events.worker_signal TO %I', role_name);
    -- The idle flag's hint for capture (000015), read and set beside the flag.
    EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE trigger_events.worker_idle_hint TO %I', role_name);
    -- Each group's retention bounds (000022), recorded by its worker at start, read by retention.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON trigger_events.group_retention TO %I', role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION trigger_events.fan_out(int[], int), '
                   'trigger_events.fan_out(int[], int, int, uuid, timestamptz), '
                   'trigger_events.subscription_status_rows(), trigger_events.delete_subscription(text), '
                   'trigger_events.delete_delivered_events(bigint[]) TO %I', role_name);
    -- The fan-out, replay and dead retry number the deliveries of ordered subscriptions (000008).
    EXECUTE format('GRANT USAGE ON SEQUENCE trigger_events.delivery_order TO %I', role_name);
END
$$;
