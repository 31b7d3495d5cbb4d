-- 000009: batches. A subscription with `batch` sends up to batch_max_events events in one request;
-- a failed batch is retried as the same events, together.
--
-- Locks: ACCESS EXCLUSIVE for a moment on trigger_events.subscriptions and
-- trigger_events.deliveries (nullable columns without defaults: nothing is rewritten), then SHARE
-- on trigger_events.deliveries while the partial index deliveries_batch builds: claims, results
-- and the fan-out wait for one scan of that table (the index itself is empty, since no delivery
-- is in a batch yet). No lock on application tables.
--
-- How: the claim of a batched subscription forms batches of the due deliveries it takes (in its
-- claim order, up to batch_max_events each) and writes each delivery's batch_id: the event id of
-- the batch's first (lowest) event. A later claim that finds any delivery of a batch due takes
-- all of its due deliveries with it (one probe of deliveries_batch), so a retry sends the same
-- events under the same webhook-id. A batch counts as one request in flight for max_in_flight
-- and one request of the rate limit's budget. The worker's role needs no new right: it already
-- updates both tables.

-- NULL: one event per request. Otherwise `batch.max_events` and `batch.max_wait`, as the
-- worker's file gives them.
ALTER TABLE trigger_events.subscriptions
    ADD COLUMN batch_max_events int CHECK (batch_max_events >= 1),
    ADD COLUMN batch_max_wait interval;
COMMENT ON COLUMN trigger_events.subscriptions.batch_max_events IS
    'batch.max_events: the most events one request carries; NULL: one event per request.';
COMMENT ON COLUMN trigger_events.subscriptions.batch_max_wait IS
    'batch.max_wait: how long a partial batch waits to fill after its oldest event became due.';

-- The batch a delivery was first claimed in: the event id of the batch's first event. Kept
-- after the batch is finished (a dead retry of its events sends them together again).
ALTER TABLE trigger_events.deliveries ADD COLUMN batch_id bigint;
COMMENT ON COLUMN trigger_events.deliveries.batch_id IS
    'The batch this delivery was first claimed in (its first event''s id); NULL: not batched.';

-- Serves the claim's look-up of the rest of a batch (`subscription_id = $1 AND batch_id = ANY
-- (...)`) for the deliveries it found due. Partial: finished deliveries and unbatched
-- subscriptions never enter it.
CREATE INDEX deliveries_batch ON trigger_events.deliveries (subscription_id, batch_id)
    WHERE status IN ('pending', 'in_flight') AND batch_id IS NOT NULL;
