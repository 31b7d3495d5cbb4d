-- 000007: protecting targets: a rate limit, a hold from Retry-After and a circuit breaker, each
-- shared by every replica through the subscription's row.
--
-- Locks: ACCESS EXCLUSIVE on trigger_events.subscriptions for a moment (nullable columns and
-- columns with constant defaults: no rewrite; claims wait for it). No lock on application tables.
--
-- Why on the subscription's row: every claim already locks it FOR UPDATE first
-- (DeliveryStore.LockSubscriptionSql), so claimers on every replica take turns there; the budget
-- and the breaker read and written under that lock are shared without a lock of their own. The
-- claim takes at most what they allow (DeliveryStore.ClaimSql); results move the breaker in the
-- result write's own round trip (TargetProtectionQueries.RecordSql). A subscription with neither
-- a rate limit nor a breaker writes nothing here except a Retry-After's hold.
--
-- Rights: none new. The worker's role already updates subscriptions (it registers them and
-- pauses and resumes them for the console), which covers these columns.

ALTER TABLE trigger_events.subscriptions
    -- Configuration, written by the worker from its file (rate_limit, circuit_breaker); NULL: off.
    ADD COLUMN rate_per_second double precision CHECK (rate_per_second > 0),
    ADD COLUMN breaker_failure_rate double precision CHECK (breaker_failure_rate > 0 AND breaker_failure_rate <= 1),
    ADD COLUMN breaker_min_requests int CHECK (breaker_min_requests >= 1),
    ADD COLUMN breaker_window interval CHECK (breaker_window > interval '0'),
    ADD COLUMN breaker_open_for interval CHECK (breaker_open_for > interval '0'),
    ADD COLUMN breaker_pause_after int CHECK (breaker_pause_after >= 1),
    -- The token bucket: tokens left at tokens_at; it refills at rate_per_second up to one
    -- second's worth (at least one request). NULL: full.
    ADD COLUMN tokens double precision,
    ADD COLUMN tokens_at timestamptz,
    -- When the last claim left due deliveries behind for want of budget (rate_limited_total).
    ADD COLUMN rate_limited_at timestamptz,
    -- A 429 or 503 with Retry-After holds the whole subscription back until then.
    ADD COLUMN held_until timestamptz,
    -- The breaker: closed (sending), open (sending nothing until circuit_changed_at + open_for),
    -- half_open (one probe request is out). circuit_opens counts opens in a row without a
    -- success; window_* count attempts and failures since window_started_at.
    ADD COLUMN circuit text NOT NULL DEFAULT 'closed' CHECK (circuit IN ('closed', 'open', 'half_open')),
    ADD COLUMN circuit_changed_at timestamptz,
    ADD COLUMN circuit_opens int NOT NULL DEFAULT 0,
    ADD COLUMN window_started_at timestamptz,
    ADD COLUMN window_requests int NOT NULL DEFAULT 0,
    ADD COLUMN window_failures int NOT NULL DEFAULT 0,
    ADD CONSTRAINT subscriptions_breaker_whole CHECK (
        num_nulls(breaker_failure_rate, breaker_min_requests, breaker_window, breaker_open_for, breaker_pause_after) IN (0, 5));

-- A subscription that is resumed (by an operator, or by returning to its file) starts with its
-- breaker closed: `resume` is how an operator says the target is back.
CREATE FUNCTION trigger_events.close_circuit_on_resume() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.circuit := 'closed';
    NEW.circuit_changed_at := now();
    NEW.circuit_opens := 0;
    NEW.window_started_at := NULL;
    NEW.window_requests := 0;
    NEW.window_failures := 0;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION trigger_events.close_circuit_on_resume() FROM PUBLIC;
CREATE TRIGGER subscriptions_close_circuit BEFORE UPDATE ON trigger_events.subscriptions
    FOR EACH ROW WHEN (NEW.enabled AND NOT OLD.enabled)
    EXECUTE FUNCTION trigger_events.close_circuit_on_resume();

-- ---------------------------------------------------------------------------------------------
-- subscription_status: the columns of 000005, then circuit (closed, open, half_open).
-- ---------------------------------------------------------------------------------------------
DROP VIEW trigger_events.subscription_status;
DROP FUNCTION trigger_events.subscription_status_rows();

CREATE FUNCTION trigger_events.subscription_status_rows()
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
) dead ON true;
$$;

CREATE VIEW trigger_events.subscription_status AS
SELECT * FROM trigger_events.subscription_status_rows();

-- migrate grants them to the worker's role again (grant_worker_role, 000005).
REVOKE ALL ON FUNCTION trigger_events.subscription_status_rows() FROM PUBLIC;
REVOKE ALL ON trigger_events.subscription_status FROM PUBLIC;
