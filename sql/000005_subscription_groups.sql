-- 000005: subscriptions belong to a group and are active or paused; the worker role's rights are
-- granted by migrate, and they no longer include writing the event log.
--
-- Locks: ACCESS EXCLUSIVE on trigger_events.subscriptions for a moment (new columns with
-- constant defaults and a check: no rewrite; claims wait for it). No lock on application tables.
--
-- Why: every worker disabled every subscription missing from its own file, so two teams'
-- workers on one database, or an old replica during a rolling deploy, switched each other's
-- subscriptions off. Now a worker registers, updates and pauses only its own group's
-- subscriptions, and refuses a name another group owns. A paused subscription is neither
-- fanned out nor claimed: its place in the log is kept, and it continues from there when it
-- returns to its file or is resumed.

ALTER TABLE trigger_events.subscriptions
    ADD COLUMN group_name text NOT NULL DEFAULT 'default' CHECK (group_name ~ '^[A-Za-z0-9_-]{1,63}$'),
    -- Why a subscription is paused: 'file' (it left its group's file; it is active again when
    -- it returns), 'operator' (triggerevents subscriptions pause; only resume ends it) or
    -- 'breaker' (its circuit breaker; only resume ends it). NULL while active.
    ADD COLUMN paused_by text CHECK (paused_by IN ('file', 'operator', 'breaker')),
    ADD COLUMN paused_reason text,
    ADD COLUMN paused_at timestamptz;
COMMENT ON COLUMN trigger_events.subscriptions.enabled IS
    'Active: fanned out and claimed. False exactly when paused_by is set (kept so by subscriptions_keep_state).';

-- Subscriptions disabled before this file had left their workers' files.
UPDATE trigger_events.subscriptions
SET paused_by = 'file', paused_reason = 'not in its group''s file', paused_at = updated_at
WHERE NOT enabled;

-- enabled and the pause columns agree, however a row is written: a DBA's
-- `UPDATE ... SET enabled = false` is an operator's pause, `SET enabled = true` a resume.
CREATE FUNCTION trigger_events.keep_subscription_state() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.enabled THEN
        NEW.paused_by := NULL;
        NEW.paused_reason := NULL;
        NEW.paused_at := NULL;
    ELSE
        NEW.paused_by := coalesce(NEW.paused_by, 'operator');
        NEW.paused_reason := coalesce(NEW.paused_reason, 'paused by an operator');
        NEW.paused_at := coalesce(NEW.paused_at, now());
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION trigger_events.keep_subscription_state() FROM PUBLIC;
CREATE TRIGGER subscriptions_keep_state BEFORE INSERT OR UPDATE ON trigger_events.subscriptions
    FOR EACH ROW EXECUTE FUNCTION trigger_events.keep_subscription_state();

-- ---------------------------------------------------------------------------------------------
-- subscription_status: group, state and why a subscription is paused, after the columns of
-- 000003. Paused subscriptions are listed with their backlog like any other.
-- ---------------------------------------------------------------------------------------------
DROP VIEW trigger_events.subscription_status;
DROP FUNCTION trigger_events.subscription_status_rows();

CREATE FUNCTION trigger_events.subscription_status_rows()
RETURNS TABLE (subscription text, trigger_name text, enabled boolean, pending bigint, retrying bigint,
               in_flight bigint, dead bigint, oldest_pending_captured_at timestamptz, oldest_pending_age_seconds double precision,
               group_name text, state text, paused_by text, paused_reason text, paused_at timestamptz)
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
       s.paused_at
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
) dead ON true;
$$;

CREATE VIEW trigger_events.subscription_status AS
SELECT * FROM trigger_events.subscription_status_rows();

REVOKE ALL ON FUNCTION trigger_events.subscription_status_rows() FROM PUBLIC;
REVOKE ALL ON trigger_events.subscription_status FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- delete_subscription(): ends a subscription and its deliveries, attempts and place in the log.
-- The only way a subscription ends; the same name registered again later is a new one.
-- SECURITY DEFINER, so that the worker's role (and the console, which runs as it) may delete a
-- subscription without the right to delete rows of any other.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.delete_subscription(subscription_name text,
    OUT deleted boolean, OUT undelivered bigint, OUT dead bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target int;
BEGIN
    -- Locked first, as a claim does: no claim of it runs while it is deleted.
    SELECT s.id INTO target FROM trigger_events.subscriptions s
    WHERE s.name = subscription_name FOR UPDATE;
    deleted := target IS NOT NULL;
    IF NOT deleted THEN
        RETURN;
    END IF;
    SELECT count(*) FILTER (WHERE d.status IN ('pending', 'in_flight')), count(*) FILTER (WHERE d.status = 'dead')
    INTO undelivered, dead
    FROM trigger_events.deliveries d WHERE d.subscription_id = target;
    DELETE FROM trigger_events.attempts a WHERE a.subscription_id = target;
    DELETE FROM trigger_events.deliveries d WHERE d.subscription_id = target;
    DELETE FROM trigger_events.subscription_positions sp WHERE sp.subscription_id = target;
    DELETE FROM trigger_events.subscriptions s WHERE s.id = target;
END
$$;
REVOKE ALL ON FUNCTION trigger_events.delete_subscription(text) FROM PUBLIC;

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

-- ---------------------------------------------------------------------------------------------
-- grant_worker_role(): the rights of the role the worker and the console log in as, and nothing
-- that changes the schema or a captured event (no INSERT, UPDATE or DELETE on event_log:
-- retention deletes through delete_delivered_events()). migrate calls it for
-- trigger_events_worker when that role exists; a DBA who names the role otherwise calls it with
-- that name. A migration that adds objects the worker uses replaces this function, and migrate
-- grants again.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.grant_worker_role(role_name name) RETURNS void
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
    EXECUTE format('GRANT EXECUTE ON FUNCTION trigger_events.fan_out(int[], int), '
                   'trigger_events.subscription_status_rows(), trigger_events.delete_subscription(text), '
                   'trigger_events.delete_delivered_events(bigint[]) TO %I', role_name);
END
$$;
REVOKE ALL ON FUNCTION trigger_events.grant_worker_role(name) FROM PUBLIC;
