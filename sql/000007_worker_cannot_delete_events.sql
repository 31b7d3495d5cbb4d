-- 000007: the worker's role loses DELETE on the event log. Retention deletes events through
-- delete_delivered_events(), which runs as the schema owner and deletes only events that every
-- subscription has received: a role that may run retention can remove nothing a subscription
-- still needs, and can change no captured event.
--
-- Locks: none on application tables; creates a function and replaces another.

-- ---------------------------------------------------------------------------------------------
-- delete_delivered_events(): deletes those of the given events that every subscription's place
-- in the log has passed and whose every delivery succeeded; returns how many. Retention's batch
-- calls it for the events it chose (and whose deliveries it deletes in the same statement: both
-- see the statement's snapshot, in which those deliveries are still there, all delivered).
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.delete_delivered_events(event_ids bigint[]) RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM trigger_events.event_log e
        WHERE e.id = ANY (event_ids)
          AND NOT EXISTS (
              SELECT 1 FROM trigger_events.subscriptions s
              JOIN trigger_events.deliveries d ON d.subscription_id = s.id AND d.event_id = e.id
              WHERE d.status <> 'delivered')
          AND NOT EXISTS (
              SELECT 1 FROM trigger_events.subscription_positions sp
              WHERE NOT pg_visible_in_snapshot(e.transaction_id, sp.position))
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION trigger_events.delete_delivered_events(bigint[]) FROM PUBLIC;

-- The worker's rights of 000005, with the log read-only: SELECT on event_log, deletes through
-- delete_delivered_events(). A role granted DELETE before keeps it until this runs for it, which
-- migrate does for trigger_events_worker.
CREATE OR REPLACE FUNCTION trigger_events.grant_worker_role(role_name name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA trigger_events TO %I', role_name);
    EXECUTE format('GRANT SELECT ON trigger_events.migrations, trigger_events.event_triggers, trigger_events.triggers, '
                   'trigger_events.subscription_status TO %I', role_name);
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON trigger_events.event_log FROM %I', role_name);
    EXECUTE format('GRANT SELECT ON trigger_events.event_log TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON trigger_events.deliveries TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON trigger_events.subscriptions TO %I', role_name);
    -- Each subscription's place in the log: made when a subscription is registered, moved by
    -- the fan-out at the head of the worker's claims.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON trigger_events.subscription_positions TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON trigger_events.attempts TO %I', role_name);
    EXECUTE format('GRANT SELECT, UPDATE ON trigger_events.worker_signal TO %I', role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION trigger_events.fan_out(int[], int), '
                   'trigger_events.subscription_status_rows(), trigger_events.delete_subscription(text), '
                   'trigger_events.delete_delivered_events(bigint[]) TO %I', role_name);
END
$$;
REVOKE ALL ON FUNCTION trigger_events.grant_worker_role(name) FROM PUBLIC;
