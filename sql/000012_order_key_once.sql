-- 000012: the fan-out computes an ordered delivery's key once.
--
-- Locks: none on tables; fan_out() is replaced, and a call running meanwhile finishes as it
-- began. No lock on application tables, and no new rights.
--
-- Why: the key of each delivery of a subscription ordered by key (order_key(), a hash of the
-- key columns' values read from the event's row) was computed twice: the planner pulled the
-- lateral subquery that computes it up into the INSERT's select list, which copied the
-- expression into both places that use the key. 4,000 events of one ordered subscription called
-- order_key() 8,000 times. The function is 000011's otherwise.
CREATE OR REPLACE FUNCTION trigger_events.fan_out(subscription_ids int[] DEFAULT NULL, max_events int DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql
-- Every statement below is a short index walk in index order; a plan chosen from the statistics
-- of a log that was empty when they were gathered must not turn one into a sequential or bitmap
-- scan of the whole batch.
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $fan_out$
DECLARE
    place record;
    target pg_snapshot;
    range_after_xid xid8;
    range_after_id bigint;
    chunk_events bigint;
    last_xid xid8;
    last_id bigint;
    made bigint := 0;
    inserted bigint;
    order_number bigint;
BEGIN
    IF max_events IS NULL OR max_events < 1 THEN
        RAISE EXCEPTION 'trigger_events.fan_out: max_events must be at least 1';
    END IF;

    -- Nothing committed beyond any of these places and no batch in progress (the usual case of
    -- a call at the head of every claim round): a few index probes, no row locked, nothing
    -- written. A place read without its lock may be older than the locked one, never newer.
    IF NOT EXISTS (
        SELECT FROM trigger_events.subscription_positions sp
        WHERE (subscription_ids IS NULL OR sp.subscription_id = ANY (subscription_ids))
          AND (sp.batch_end IS NOT NULL
               OR sp.updated_at < now() - interval '1 second'
               OR EXISTS (
                   SELECT FROM trigger_events.event_log e
                   WHERE e.transaction_id >= pg_snapshot_xmax(sp.position)
                     AND pg_visible_in_snapshot(e.transaction_id, pg_current_snapshot()))
               OR EXISTS (
                   SELECT FROM trigger_events.event_log e
                   WHERE e.transaction_id = ANY (ARRAY(SELECT pg_snapshot_xip(sp.position)))
                     AND pg_visible_in_snapshot(e.transaction_id, pg_current_snapshot())))) THEN
        RETURN 0;
    END IF;

    -- Subscriptions at the same place (the usual case: they were fanned out together) share
    -- one read of the log. pg_snapshot has no equality operator, hence its text.
    FOR place IN
        SELECT (array_agg(p.position))[1] AS position, (array_agg(p.batch_end))[1] AS batch_end, max(p.batch_order) AS batch_order,
               p.batch_after_xid, p.batch_after_id, array_agg(p.subscription_id) AS ids
        FROM (SELECT sp.subscription_id, sp.position, sp.batch_end, sp.batch_after_xid, sp.batch_after_id, sp.batch_order
              FROM trigger_events.subscription_positions sp
              WHERE subscription_ids IS NULL OR sp.subscription_id = ANY (subscription_ids)
              FOR UPDATE SKIP LOCKED) p
        GROUP BY p.position::text, p.batch_end::text, p.batch_after_xid, p.batch_after_id
    LOOP
        -- A new batch ends at a snapshot taken after the lock: it sees every place another
        -- fan-out committed before.
        target := coalesce(place.batch_end, pg_current_snapshot());
        -- Nothing committed since the place: the place moves on at most once a second then, so
        -- that retention is not held back by an idle subscription.
        IF place.batch_end IS NULL
           AND NOT EXISTS (
               SELECT FROM trigger_events.event_log e
               WHERE e.transaction_id >= pg_snapshot_xmax(place.position) AND e.transaction_id < pg_snapshot_xmax(target)
                 AND pg_visible_in_snapshot(e.transaction_id, target))
           AND NOT EXISTS (
               SELECT FROM trigger_events.event_log e
               WHERE e.transaction_id = ANY (ARRAY(SELECT pg_snapshot_xip(place.position)))
                 AND pg_visible_in_snapshot(e.transaction_id, target)) THEN
            UPDATE trigger_events.subscription_positions
            SET position = target, updated_at = now()
            WHERE subscription_id = ANY (place.ids) AND updated_at < now() - interval '1 second';
            CONTINUE;
        END IF;

        -- The batch's number: every delivery of an ordered subscription made from this batch
        -- gets it, in every chunk. A batch holds what committed between two snapshots, in no
        -- known commit order; within it, event ids order the events of one row as their
        -- commits did (a row's next writer waits for the lock of the last, and captures after
        -- it), and a transaction's events as it captured them. Transaction ids would not: an
        -- UPDATE takes its id before it waits for the row, so a later writer may hold the lower.
        order_number := coalesce(place.batch_order, nextval('trigger_events.delivery_order'));

        -- Where the range of transactions that began after the place resumes: after the last
        -- event given when the batch got that far, else at the place's xmax.
        IF place.batch_after_xid >= pg_snapshot_xmax(place.position) THEN
            range_after_xid := place.batch_after_xid;
            range_after_id := place.batch_after_id;
        ELSE
            range_after_xid := pg_snapshot_xmax(place.position);
            range_after_id := 0;
        END IF;

        -- The next chunk of the batch: transactions that were still running at the place, then
        -- those that started after it, each only if it committed before the batch's end.
        -- Aborted transactions left no visible rows.
        WITH chunk AS (
            -- Each part reads at most max_events entries in index order; a plan over their
            -- union would read all of a large batch and sort it, for every chunk. The running
            -- transactions' ids are all below the place's xmax, so they come first.
            SELECT c.part, c.id, c.transaction_id, c.trigger_name, c.op, c.subscription_name
            FROM (
                (SELECT 0 AS part, e.id, e.transaction_id, e.trigger_name, e.op, e.subscription_name
                 FROM trigger_events.event_log e
                 WHERE e.transaction_id = ANY (ARRAY(SELECT pg_snapshot_xip(place.position)))
                   AND (e.transaction_id, e.id) > (coalesce(place.batch_after_xid, '0'::xid8), coalesce(place.batch_after_id, 0))
                   AND pg_visible_in_snapshot(e.transaction_id, target)
                 ORDER BY e.transaction_id, e.id
                 LIMIT max_events)
                UNION ALL
                (SELECT 1 AS part, e.id, e.transaction_id, e.trigger_name, e.op, e.subscription_name
                 FROM trigger_events.event_log e
                 -- One row comparison is where the scan starts: beside a plain bound on
                 -- transaction_id it started at the head of the index and walked the whole log.
                 WHERE (e.transaction_id, e.id) > (range_after_xid, range_after_id)
                   AND e.transaction_id < pg_snapshot_xmax(target)
                   AND pg_visible_in_snapshot(e.transaction_id, target)
                 ORDER BY e.transaction_id, e.id
                 LIMIT max_events)
            ) c
            ORDER BY c.part, c.transaction_id, c.id
            LIMIT max_events
        ), keys AS (
            -- The key columns of each ordered subscription, resolved once per chunk.
            SELECT s.id, trigger_events.ordering_columns(s.trigger_name, s.ordering_key) AS cols
            FROM trigger_events.subscriptions s
            WHERE s.id = ANY (place.ids) AND s.ordering_key IS NOT NULL
        ), made_deliveries AS (
            -- Only ordered subscriptions read the event's rows (one index probe).
            INSERT INTO trigger_events.deliveries (subscription_id, event_id, order_key, order_seq)
            SELECT s.id, c.id, ok.key, CASE WHEN ok.key IS NOT NULL THEN order_number END
            FROM chunk c
            JOIN trigger_events.subscriptions s
              ON s.id = ANY (place.ids) AND s.trigger_name = c.trigger_name AND c.op = ANY (s.operations)
             -- A backfill for one subscription (000005) reaches that one only.
             AND (c.subscription_name IS NULL OR c.subscription_name = s.name)
            LEFT JOIN keys k ON k.id = s.id
            CROSS JOIN LATERAL (
                -- OFFSET 0 keeps the key a value of its own: pulled up into the select list, its
                -- expression was copied into both places that use it and computed twice.
                SELECT CASE WHEN k.cols IS NOT NULL THEN (
                    SELECT trigger_events.order_key(k.cols, e.op, e.old_data, e.new_data)
                    FROM trigger_events.event_log e WHERE e.id = c.id) END AS key
                OFFSET 0
            ) ok
            -- A replay may have made a row already, and so may capture still running the code
            -- of migration 000002 while this one was applied.
            ON CONFLICT DO NOTHING
            RETURNING 1
        ), last_event AS (
            SELECT c.transaction_id, c.id FROM chunk c ORDER BY c.transaction_id DESC, c.id DESC LIMIT 1
        )
        SELECT (SELECT count(*) FROM chunk), (SELECT count(*) FROM made_deliveries), l.transaction_id, l.id
        INTO chunk_events, inserted, last_xid, last_id
        FROM (SELECT 1) one LEFT JOIN last_event l ON true;
        made := made + inserted;

        IF chunk_events < max_events THEN
            -- The batch is done: its end is the new place.
            UPDATE trigger_events.subscription_positions
            SET position = target, batch_end = NULL, batch_after_xid = NULL, batch_after_id = NULL, batch_order = NULL, updated_at = now()
            WHERE subscription_id = ANY (place.ids);
        ELSE
            UPDATE trigger_events.subscription_positions
            SET batch_end = target, batch_after_xid = last_xid, batch_after_id = last_id, batch_order = order_number, updated_at = now()
            WHERE subscription_id = ANY (place.ids);
        END IF;
    END LOOP;
    RETURN made;
END
$fan_out$;
