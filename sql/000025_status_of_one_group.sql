-- 000025: subscription status can be read for one group.
--
-- Locks: none on tables (a new function; subscription_status_rows() and grant_worker_role()
-- replaced, their owners and grants kept). No lock on application tables. The worker's role
-- gets EXECUTE on the new function.
--
-- Why: each group's backlog reporter (one replica per group, every metrics interval) read
-- subscription_status, which counts every subscription's deliveries and the events of the log
-- not yet fanned out to it, and kept its own group's rows. With several teams' workers on one
-- database, each team's reporter did every team's counting: N groups, N times the work, most of
-- it on the largest backlog. The view's filter cannot reach inside the function (it runs as the
-- schema owner, so PostgreSQL does not inline it): the group has to be an argument.

CREATE FUNCTION trigger_events.subscription_status_rows(only_group text)
RETURNS TABLE (subscription text, trigger_name text, enabled boolean, pending bigint, retrying bigint,
               in_flight bigint, dead bigint, oldest_pending_captured_at timestamptz, oldest_pending_age_seconds double precision,
               group_name text, state text, paused_by text, paused_reason text, paused_at timestamptz, circuit text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
SELECT s.name AS subscription,
       s.trigger_name,
       s.enabled,
       coalesce(p.pending, 0) + coalesce(u.events, 0) AS pending,
       coalesce(p.retrying, 0) AS retrying,
       coalesce(f.in_flight, 0) AS in_flight,
       coalesce(dead.dead, 0) AS dead,
       oldest.captured_at AS oldest_pending_captured_at,
       extract(epoch FROM now() - oldest.captured_at)::double precision AS oldest_pending_age_seconds,
       s.group_name,
       CASE WHEN s.enabled THEN 'active' ELSE 'paused' END AS state,
       s.paused_by,
       s.paused_reason,
       s.paused_at,
       s.circuit
FROM trigger_events.subscriptions s
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE dl.attempts = 0) AS pending,
           count(*) FILTER (WHERE dl.attempts > 0) AS retrying,
           min(dl.event_id) AS oldest_event_id
    FROM trigger_events.deliveries dl
    WHERE dl.subscription_id = s.id AND dl.status = 'pending'
) p ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS in_flight, min(dl.event_id) AS oldest_event_id
    FROM trigger_events.deliveries dl
    WHERE dl.subscription_id = s.id AND dl.status = 'in_flight'
) f ON true
LEFT JOIN LATERAL trigger_events.events_not_fanned_out(s.id) u ON true
LEFT JOIN trigger_events.event_log oldest
       ON oldest.id = least(p.oldest_event_id, f.oldest_event_id, u.oldest_event_id)
LEFT JOIN LATERAL (
    SELECT count(*) AS dead FROM trigger_events.deliveries dl
    WHERE dl.subscription_id = s.id AND dl.status = 'dead'
) dead ON true
-- NULL: every group, as the view reads it. The condition is on the subscriptions' scan alone,
-- so another group's subscriptions are left out before any of their deliveries are counted.
WHERE only_group IS NULL OR s.group_name = only_group;
$$;
COMMENT ON FUNCTION trigger_events.subscription_status_rows(text) IS
    'The rows of subscription_status for one group (NULL: every group); runs as the schema owner.';
REVOKE ALL ON FUNCTION trigger_events.subscription_status_rows(text) FROM PUBLIC;

-- 000007's function, now the one above for every group: the view keeps its definition, and
-- workers of an earlier release, which read the view, read what they read before.
CREATE OR REPLACE FUNCTION trigger_events.subscription_status_rows()
RETURNS TABLE (subscription text, trigger_name text, enabled boolean, pending bigint, retrying bigint,
               in_flight bigint, dead bigint, oldest_pending_captured_at timestamptz, oldest_pending_age_seconds double precision,
               group_name text, state text, paused_by text, paused_reason text, paused_at timestamptz, circuit text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
SELECT * FROM trigger_events.subscription_status_rows(NULL::text);
$$;

-- 000022's function, with EXECUTE on the new function.
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
    -- subscription_status_rows(text) (000025): one group's status, for its backlog gauges.
    EXECUTE format('GRANT EXECUTE ON FUNCTION trigger_events.fan_out(int[], int), '
                   'trigger_events.fan_out(int[], int, int, uuid, timestamptz), '
                   'trigger_events.subscription_status_rows(), trigger_events.subscription_status_rows(text), '
                   'trigger_events.delete_subscription(text), '
                   'trigger_events.delete_delivered_events(bigint[]) TO %I', role_name);
    -- The fan-out, replay and dead retry number the deliveries of ordered subscriptions (000008).
    EXECUTE format('GRANT USAGE ON SEQUENCE trigger_events.delivery_order TO %I', role_name);
END
$$;
