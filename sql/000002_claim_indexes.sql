-- 000002: one partial index per claimable state, in place of deliveries_due.
--
-- Locks: SHARE on trigger_events.deliveries while the two indexes build (capture into attached
-- tables waits for one scan of deliveries; seconds per few million rows), then ACCESS
-- EXCLUSIVE for a moment to drop the old index. No lock on application tables.
--
-- Why: deliveries_due held pending and in-flight rows together. Counting a subscription's
-- in-flight deliveries for max_in_flight walked every pending row due later (a retrying
-- backlog) and every dead entry left by a recent claim; the due scan walked past leases. Apart,
-- the count reads only leases, the pending scan only pending rows, and a claim or a result
-- still adds exactly one entry to one of them per row version (none for delivered or dead).

-- Serves the claim of due deliveries (`WHERE subscription_id = $1 AND status = 'pending' AND
-- (next_attempt_at, event_id) > (cursor) ORDER BY next_attempt_at, event_id`). event_id makes
-- the order total, so a claim can resume after the last row it took instead of walking the
-- entries of every row claimed since the last vacuum (a drain leaves them all behind it).
CREATE INDEX deliveries_pending ON trigger_events.deliveries (subscription_id, next_attempt_at, event_id)
    WHERE status = 'pending';

-- Serves the max_in_flight count (`status = 'in_flight' AND next_attempt_at > now()`: leases
-- still held) and the take-over of expired leases (`next_attempt_at <= now()`).
CREATE INDEX deliveries_leased ON trigger_events.deliveries (subscription_id, next_attempt_at)
    WHERE status = 'in_flight';

DROP INDEX trigger_events.deliveries_due;

-- The same view as before, counting each state from its own index: `status IN ('pending',
-- 'in_flight')` matches neither partial index, and would scan every delivery, history included.
CREATE OR REPLACE VIEW trigger_events.subscription_status AS
SELECT s.name AS subscription,
       s.trigger_name,
       s.enabled,
       coalesce(p.pending, 0) AS pending,
       coalesce(p.retrying, 0) AS retrying,
       coalesce(f.in_flight, 0) AS in_flight,
       coalesce(dead.dead, 0) AS dead,
       oldest.captured_at AS oldest_pending_captured_at,
       extract(epoch FROM now() - oldest.captured_at)::double precision AS oldest_pending_age_seconds
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
LEFT JOIN trigger_events.event_log oldest ON oldest.id = least(p.oldest_event_id, f.oldest_event_id)
LEFT JOIN LATERAL (
    SELECT count(*) AS dead FROM trigger_events.deliveries dl
    WHERE dl.subscription_id = s.id AND dl.status = 'dead'
) dead ON true;
