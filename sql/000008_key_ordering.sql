-- 000008: per-key ordering. A subscription with `ordering: key` gets, for each key, its events
-- one at a time across all workers, in commit order.
--
-- Locks: ACCESS EXCLUSIVE for a moment on trigger_events.subscriptions,
-- trigger_events.subscription_positions and trigger_events.deliveries (nullable columns without
-- defaults: nothing is rewritten), then SHARE on trigger_events.deliveries while the partial
-- index deliveries_key_order builds: claims, results and the fan-out wait for one scan of that
-- table (seconds per few million rows; the index itself is empty, since no delivery has a key
-- yet). No lock on application tables.
--
-- How: the fan-out computes each delivery's key (order_key, a hash of the key columns' values)
-- and gives it the number of its fan-out batch (order_seq): deliveries of a key are in
-- (order_seq, event_id) order. A claim takes a delivery of a key only when no delivery of the
-- same subscription and key before it is pending or in flight (one probe of
-- deliveries_key_order), and not while its batch is still being fanned out in chunks. Claims of
-- one subscription take turns under its row lock and read committed state, so two claimers
-- never take two of a key. A failing delivery stays
-- pending (retrying) and holds back the later ones of its key only; once it is delivered or
-- dead, the next one of its key is made due now (by the result write), so a claim that resumes
-- from its cursor finds it without a sweep from the head of the queue.

-- ---------------------------------------------------------------------------------------------
-- NULL: not ordered (`ordering: none`). '{}': ordered by the table's primary key. Otherwise the
-- names of the key columns, as they appear in the events' rows.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE trigger_events.subscriptions ADD COLUMN ordering_key text[];
COMMENT ON COLUMN trigger_events.subscriptions.ordering_key IS
    'ordering: key. NULL: not ordered; empty: the table''s primary key; else the key columns.';

-- order_key: the event's key (NULL: not ordered, and MANUAL events, which have none). order_seq:
-- with event_id, the delivery's place among the deliveries of its key: the number of the fan-out
-- batch that made it; a dead retry or a replay draws a new one, which puts it after the events
-- of its key it had before it.
ALTER TABLE trigger_events.deliveries
    ADD COLUMN order_key uuid,
    ADD COLUMN order_seq bigint;

CREATE SEQUENCE trigger_events.delivery_order AS bigint;

-- The number of the fan-out batch in progress (while batch_end is set): its deliveries are not
-- claimed until the batch is done, since a later chunk may hold an earlier event of their key.
ALTER TABLE trigger_events.subscription_positions ADD COLUMN batch_order bigint;

-- Serves the claim's check for an earlier unfinished delivery of the same key (`subscription_id
-- = $1 AND order_key = k AND (order_seq, event_id) < (n, e) AND status IN ('pending',
-- 'in_flight')`) and the result write's look-up of a key's next delivery. Partial: finished
-- deliveries and unordered subscriptions never enter it.
CREATE INDEX deliveries_key_order ON trigger_events.deliveries (subscription_id, order_key, order_seq, event_id)
    WHERE status IN ('pending', 'in_flight') AND order_key IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- The key columns of an ordered subscription: the configured ones, or the primary key of the
-- trigger's table as it is now ('{}' when it has none, or the trigger is not attached: every
-- event then has the same key, which keeps order at the cost of concurrency; the worker refuses
-- to start with such a subscription while the trigger is attached).
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.ordering_columns(trigger_name text, ordering_key text[]) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN ordering_key IS NULL THEN NULL
        WHEN cardinality(ordering_key) > 0 THEN ordering_key
        -- From the catalog directly: the worker's role may not execute backfill_key().
        ELSE coalesce((SELECT array_agg(a.attname::text ORDER BY k.o)
                       FROM trigger_events.event_triggers et
                       JOIN pg_index i ON i.indrelid = et.relid AND i.indisprimary
                       CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, o)
                       JOIN pg_attribute a ON a.attrelid = et.relid AND a.attnum = k.attnum
                       WHERE et.name = ordering_columns.trigger_name), '{}')
    END
$$;

-- ---------------------------------------------------------------------------------------------
-- An event's key for key_columns: an UPDATE, INSERT or READ belongs to its new row's key, a
-- DELETE to its old row's; a MANUAL event has none (NULL). The values are hashed so that the
-- index entry stays small whatever the key's values are (a btree entry may not pass 2.7 kB); a
-- collision would only put two keys in one line.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.order_key(key_columns text[], op text, old_row jsonb, new_row jsonb) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN key_columns IS NULL OR op = 'MANUAL' THEN NULL
           ELSE md5(coalesce((SELECT jsonb_agg(coalesce(r.row_image -> u.col, 'null'::jsonb) ORDER BY u.o)
                              FROM unnest(key_columns) WITH ORDINALITY AS u(col, o)), '[]'::jsonb)::text)::uuid END
    FROM (SELECT CASE WHEN op = 'DELETE' THEN old_row ELSE new_row END AS row_image) r
$$;

-- The key of an event for one subscription (replay, start_from backfill): as the fan-out makes it.
CREATE FUNCTION trigger_events.delivery_order_key(subscription_id int, event_id bigint) RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT trigger_events.order_key(trigger_events.ordering_columns(s.trigger_name, s.ordering_key), e.op, e.old_data, e.new_data)
    FROM trigger_events.subscriptions s, trigger_events.event_log e
    WHERE s.id = delivery_order_key.subscription_id AND e.id = delivery_order_key.event_id AND s.ordering_key IS NOT NULL
$$;

-- ---------------------------------------------------------------------------------------------
-- fan_out(): as in 000006, and the deliveries of ordered subscriptions get their key and their
-- place in it.
-- ---------------------------------------------------------------------------------------------
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
            LEFT JOIN LATERAL (
                SELECT trigger_events.order_key(k.cols, e.op, e.old_data, e.new_data) AS key
                FROM trigger_events.event_log e WHERE k.cols IS NOT NULL AND e.id = c.id
            ) ok ON true
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

-- ---------------------------------------------------------------------------------------------
-- grant_worker_role(): as in 000005, and the worker's role may number ordered deliveries.
-- ---------------------------------------------------------------------------------------------
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
    EXECUTE format('GRANT EXECUTE ON FUNCTION trigger_events.fan_out(int[], int), '
                   'trigger_events.subscription_status_rows(), trigger_events.delete_subscription(text), '
                   'trigger_events.delete_delivered_events(bigint[]) TO %I', role_name);
    -- The fan-out, replay and dead retry number the deliveries of ordered subscriptions (000008).
    EXECUTE format('GRANT USAGE ON SEQUENCE trigger_events.delivery_order TO %I', role_name);
END
$$;
REVOKE ALL ON FUNCTION trigger_events.grant_worker_role(name) FROM PUBLIC;
