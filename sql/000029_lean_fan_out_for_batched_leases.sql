-- 000029: the fan-out makes a batched subscription's leased deliveries with a statement of its own.
--
-- Locks: none on tables; fan_out(int[], int, int, uuid, timestamptz) is replaced (its owner,
-- grants and settings kept), and a call running meanwhile finishes as it began. No lock on
-- application tables; no new rights.
--
-- Why: 000020 gave a plain subscription alone at its place a statement of its own; a batched one
-- still took the chunk statement that serves every place, whose join with the place's
-- subscriptions, keys and parking laterals ran for each of its events. In a batched drain that
-- statement was the server's largest cost per event (bench/README.md, "Successes on their
-- delivery's row (000028), batched fan-out in a statement of its own (000029)"). For one batched subscription, not ordered, alone at its place with
-- room for leases, the fan-out now runs a statement with only what it needs: the chunk, the
-- subscription's events in it that have no delivery yet numbered in order, the first whole
-- batches of its room made leased and named by their first event, what is left over made
-- pending, the chunk stopped after the last lease when more follow. The same deliveries, leases
-- and place as the chunk statement (a test runs both); every other place takes that one.
--
-- The function is 000020's otherwise.

CREATE OR REPLACE FUNCTION trigger_events.fan_out(
    subscription_ids int[], max_events int, lease_subscription int, lease_to uuid, lease_ends timestamptz,
    OUT made bigint, OUT leased bigint[])
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
    inserted bigint;
    order_number bigint;
    -- What the claim of lease_subscription left room for, in events (see the migration's
    -- head), and whether the current place is that subscription's and leases.
    room int := 0;
    -- Whether lease_subscription is batched, and the events of one of its requests: its
    -- batch_max_events, else 1.
    batched boolean := false;
    batch_size int := 1;
    -- The requests the claim offered the fan-out before it took any (its setting), and those
    -- it took.
    offered int := 0;
    taken bigint;
    leasing boolean;
    chunk_limit int;
    leased_here bigint[];
    -- Leases the chunk's rows were meant to get, and whether the leases ran out before the
    -- leased subscription's events in the chunk did (see "stop" below).
    planned bigint;
    stopped boolean;
    -- Whether the caller parks a key's waiting deliveries (its setting: see the migration's head).
    parking boolean := coalesce(current_setting('trigger_events.park_waiting', true), '') = 'on';
    -- The leased subscription's filter, for a place it is alone at (000020); no trigger for an
    -- ordered one.
    lean_trigger text;
    lean_operations text[];
    lean_name text;
BEGIN
    made := 0;
    leased := '{}';
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
        RETURN;
    END IF;

    IF lease_subscription IS NOT NULL AND lease_to IS NOT NULL AND lease_ends IS NOT NULL THEN
        -- The requests the claim took, found by their lease (it ends exactly when this one will),
        -- counted as the claim's capacity counts them: a batch is one while the subscription is
        -- batched; once it is not, the rows of a batch it was once in are one each.
        SELECT s.batch_max_events IS NOT NULL, coalesce(s.batch_max_events, 1),
               (SELECT count(DISTINCT CASE WHEN s.batch_max_events IS NOT NULL THEN coalesce(d.batch_id, d.event_id) ELSE d.event_id END)
                FROM trigger_events.deliveries d
                WHERE d.subscription_id = lease_subscription AND d.status = 'in_flight'
                  AND d.next_attempt_at = lease_ends AND d.lease_owner = lease_to),
               -- Its filter, for the statement of a place it is alone at; not for an ordered
               -- one, whatever room its caller passed: its deliveries need their keys.
               CASE WHEN s.ordering_key IS NULL THEN s.trigger_name END, s.operations, s.name
        INTO batched, batch_size, taken, lean_trigger, lean_operations, lean_name
        FROM trigger_events.subscriptions s WHERE s.id = lease_subscription;
        batched := coalesce(batched, false);
        batch_size := coalesce(batch_size, 1);
        offered := coalesce(nullif(current_setting('trigger_events.lease_room', true), ''), '0')::int;
        room := (offered - coalesce(taken, 0)) * batch_size;
    END IF;

    -- Subscriptions at the same place (the usual case: they were fanned out together) share
    -- one read of the log. pg_snapshot has no equality operator, hence its text.
    FOR place IN
        SELECT (array_agg(p.position))[1] AS position, (array_agg(p.batch_end))[1] AS batch_end, max(p.batch_order) AS batch_order,
               p.batch_after_xid, p.batch_after_id, array_agg(p.subscription_id) AS ids, min(p.updated_at) AS updated_at
        FROM (SELECT sp.subscription_id, sp.position, sp.batch_end, sp.batch_after_xid, sp.batch_after_id, sp.batch_order, sp.updated_at
              FROM trigger_events.subscription_positions sp
              WHERE subscription_ids IS NULL OR sp.subscription_id = ANY (subscription_ids)
              FOR UPDATE SKIP LOCKED) p
        GROUP BY p.position::text, p.batch_end::text, p.batch_after_xid, p.batch_after_id
    LOOP
        leasing := room > 0 AND lease_subscription = ANY (place.ids);
        -- The leased subscription alone at its place, and its claim took all the room it had:
        -- what is in the log waits there until a claim runs short, and is then made leased.
        -- Made pending now, each delivery would be written once more when a claim took it, and
        -- the claim would take it instead of the fan-out leasing the next, round after round.
        -- Not for longer than a second, though: a claim kept full by due retries must not keep
        -- new events out of the queue, where they take their turn by due time.
        IF offered > 0 AND room <= 0 AND place.ids = ARRAY[lease_subscription]
           AND place.updated_at >= now() - interval '1 second' THEN
            CONTINUE;
        END IF;
        -- The leased subscription's place reads what it has room for, so that its part is
        -- leased rather than left pending behind the claim; a whole batch at least, or none of
        -- it could be leased; and no less than one claim's worth (a quarter of max_events,
        -- which the worker passes as four): the same read serves every subscription at the
        -- place and every trigger's events, and a room of one or two must not slow the walk
        -- through them down to it.
        chunk_limit := CASE WHEN leasing THEN greatest(least(max_events, greatest(room, max_events / 4, 1)), batch_size) ELSE max_events END;
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
        -- One plain subscription alone at its place, with room for leases (see the head): its
        -- events of the chunk in the chunk's order, the first `room` made leased, and the chunk
        -- stopped after the last of them when more of its events follow, as the chunk statement
        -- below does for such a place.
        IF leasing AND NOT batched AND lean_trigger IS NOT NULL AND place.ids = ARRAY[lease_subscription] THEN
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
                     LIMIT chunk_limit)
                    UNION ALL
                    (SELECT 1 AS part, e.id, e.transaction_id, e.trigger_name, e.op, e.subscription_name
                     FROM trigger_events.event_log e
                     -- One row comparison is where the scan starts: beside a plain bound on
                     -- transaction_id it started at the head of the index and walked the whole log.
                     WHERE (e.transaction_id, e.id) > (range_after_xid, range_after_id)
                       AND e.transaction_id < pg_snapshot_xmax(target)
                       AND pg_visible_in_snapshot(e.transaction_id, target)
                     ORDER BY e.transaction_id, e.id
                     LIMIT chunk_limit)
                ) c
                ORDER BY c.part, c.transaction_id, c.id
                LIMIT chunk_limit
            ), matching AS (
                SELECT c.part, c.transaction_id, c.id,
                       row_number() OVER (ORDER BY c.part, c.transaction_id, c.id) AS n,
                       count(*) OVER () AS matching_count
                FROM chunk c
                WHERE c.trigger_name = lean_trigger AND c.op = ANY (lean_operations)
                  -- A backfill for one subscription (000005) reaches that one only.
                  AND (c.subscription_name IS NULL OR c.subscription_name = lean_name)
            ), stop AS (
                SELECT m.part, m.transaction_id, m.id FROM matching m WHERE m.n = room AND m.matching_count > room
            ), made_deliveries AS (
                INSERT INTO trigger_events.deliveries (subscription_id, event_id, status, lease_owner, attempts, next_attempt_at)
                SELECT lease_subscription, m.id, 'in_flight', lease_to, 1, lease_ends
                FROM matching m
                WHERE m.n <= room
                -- A replay may have made a row already: it is left as it is, and not leased.
                ON CONFLICT DO NOTHING
                RETURNING event_id
            ), last_event AS (
                -- Where the next chunk starts: after the stop, else after the chunk.
                SELECT p.transaction_id, p.id FROM stop p
                UNION ALL
                (SELECT c.transaction_id, c.id FROM chunk c WHERE NOT EXISTS (SELECT FROM stop) ORDER BY c.transaction_id DESC, c.id DESC LIMIT 1)
            )
            SELECT (SELECT count(*) FROM chunk), (SELECT count(*) FROM made_deliveries), l.transaction_id, l.id,
                   ARRAY(SELECT m.event_id FROM made_deliveries m), EXISTS (SELECT FROM stop)
            INTO chunk_events, inserted, last_xid, last_id, leased_here, stopped
            FROM (SELECT 1) one LEFT JOIN last_event l ON true;
        ELSIF leasing AND batched AND lean_trigger IS NOT NULL AND place.ids = ARRAY[lease_subscription] THEN
            -- One batched subscription (not ordered) alone at its place, with room for leases
            -- (000029): the chunk statement below for such a place, without what only other
            -- places need (the join with every subscription at the place, keys, parking).
            WITH chunk AS (
                -- As above.
                SELECT c.part, c.id, c.transaction_id, c.trigger_name, c.op, c.subscription_name
                FROM (
                    (SELECT 0 AS part, e.id, e.transaction_id, e.trigger_name, e.op, e.subscription_name
                     FROM trigger_events.event_log e
                     WHERE e.transaction_id = ANY (ARRAY(SELECT pg_snapshot_xip(place.position)))
                       AND (e.transaction_id, e.id) > (coalesce(place.batch_after_xid, '0'::xid8), coalesce(place.batch_after_id, 0))
                       AND pg_visible_in_snapshot(e.transaction_id, target)
                     ORDER BY e.transaction_id, e.id
                     LIMIT chunk_limit)
                    UNION ALL
                    (SELECT 1 AS part, e.id, e.transaction_id, e.trigger_name, e.op, e.subscription_name
                     FROM trigger_events.event_log e
                     WHERE (e.transaction_id, e.id) > (range_after_xid, range_after_id)
                       AND e.transaction_id < pg_snapshot_xmax(target)
                       AND pg_visible_in_snapshot(e.transaction_id, target)
                     ORDER BY e.transaction_id, e.id
                     LIMIT chunk_limit)
                ) c
                ORDER BY c.part, c.transaction_id, c.id
                LIMIT chunk_limit
            ), targets AS (
                -- The subscription's events of the chunk, those that may be leased numbered in the
                -- chunk's order. One that has its delivery already (a replay made it) is left
                -- out: a batch must not be named after it.
                SELECT c.part, c.transaction_id, c.id, w.eligible,
                       row_number() OVER (PARTITION BY w.eligible ORDER BY c.part, c.transaction_id, c.id) AS n,
                       count(*) OVER (PARTITION BY w.eligible) AS eligible_count
                FROM chunk c
                CROSS JOIN LATERAL (
                    SELECT batch_size = 1
                           OR NOT EXISTS (SELECT FROM trigger_events.deliveries d WHERE d.subscription_id = lease_subscription AND d.event_id = c.id)
                           AS eligible
                    OFFSET 0
                ) w
                WHERE c.trigger_name = lean_trigger AND c.op = ANY (lean_operations)
                  -- A backfill for one subscription (000005) reaches that one only.
                  AND (c.subscription_name IS NULL OR c.subscription_name = lean_name)
            ), leases AS (
                -- The first `room` of those in whole batches, each named by its lowest event id.
                SELECT t.part, t.transaction_id, t.id, l.leased, t.n, t.eligible_count,
                       CASE WHEN l.leased THEN min(t.id) OVER (PARTITION BY l.leased, (t.n - 1) / batch_size) END AS batch_id
                FROM targets t
                CROSS JOIN LATERAL (
                    SELECT t.eligible AND t.n <= least(room / batch_size, t.eligible_count / batch_size) * batch_size AS leased
                    OFFSET 0
                ) l
            ), stop AS (
                -- The leases ran out before its events in the chunk did: the chunk stops after
                -- the last lease, and the rest stays in the log for the next round.
                SELECT l.part, l.transaction_id, l.id
                FROM leases l
                WHERE l.leased AND l.n = room / batch_size * batch_size AND l.eligible_count > l.n
            ), made_deliveries AS (
                -- Up to the stop: the leased, and what is left over of a batch, pending, to wait
                -- for max_wait or the next events.
                INSERT INTO trigger_events.deliveries (subscription_id, event_id, status, lease_owner, attempts, next_attempt_at, batch_id)
                SELECT lease_subscription, l.id,
                       CASE WHEN l.leased THEN 'in_flight' ELSE 'pending' END::trigger_events.delivery_status,
                       CASE WHEN l.leased THEN lease_to END,
                       CASE WHEN l.leased THEN 1 ELSE 0 END,
                       CASE WHEN l.leased THEN lease_ends ELSE now() END,
                       l.batch_id
                FROM leases l
                CROSS JOIN (SELECT p.part, p.transaction_id, p.id FROM (SELECT 1) one LEFT JOIN stop p ON true) st
                WHERE st.id IS NULL OR (l.part, l.transaction_id, l.id) <= (st.part, st.transaction_id, st.id)
                ON CONFLICT DO NOTHING
                RETURNING event_id, lease_owner IS NOT NULL AS leased
            ), last_event AS (
                -- Where the next chunk starts: after the stop, else after the chunk.
                SELECT p.transaction_id, p.id FROM stop p
                UNION ALL
                (SELECT c.transaction_id, c.id FROM chunk c WHERE NOT EXISTS (SELECT FROM stop) ORDER BY c.transaction_id DESC, c.id DESC LIMIT 1)
            )
            SELECT (SELECT count(*) FROM chunk), (SELECT count(*) FROM made_deliveries), l.transaction_id, l.id,
                   ARRAY(SELECT m.event_id FROM made_deliveries m WHERE m.leased),
                   (SELECT count(*) FROM leases x WHERE x.leased), EXISTS (SELECT FROM stop)
            INTO chunk_events, inserted, last_xid, last_id, leased_here, planned, stopped
            FROM (SELECT 1) one LEFT JOIN last_event l ON true;
        ELSE
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
                     LIMIT chunk_limit)
                    UNION ALL
                    (SELECT 1 AS part, e.id, e.transaction_id, e.trigger_name, e.op, e.subscription_name
                     FROM trigger_events.event_log e
                     -- One row comparison is where the scan starts: beside a plain bound on
                     -- transaction_id it started at the head of the index and walked the whole log.
                     WHERE (e.transaction_id, e.id) > (range_after_xid, range_after_id)
                       AND e.transaction_id < pg_snapshot_xmax(target)
                       AND pg_visible_in_snapshot(e.transaction_id, target)
                     ORDER BY e.transaction_id, e.id
                     LIMIT chunk_limit)
                ) c
                ORDER BY c.part, c.transaction_id, c.id
                LIMIT chunk_limit
            ), keys AS MATERIALIZED (
                -- The key columns of each ordered subscription, resolved once per chunk (inlined,
                -- they were resolved again for every event).
                SELECT s.id, trigger_events.ordering_columns(s.trigger_name, s.ordering_key) AS cols
                FROM trigger_events.subscriptions s
                WHERE s.id = ANY (place.ids) AND s.ordering_key IS NOT NULL
            ), targets AS (
                -- Each event of the chunk with each subscription it goes to. Those of the leased
                -- subscription that may be leased are numbered in the chunk's order (a window over
                -- the chunk's few hundred rows: a join of the chunk with a set of its own, with hash
                -- joins off, compared every pair). An event that already has its delivery (a replay
                -- made it) is not made here (ON CONFLICT below), so it is not leased; of a batched
                -- subscription it is left out already, since a batch must not be named after it.
                SELECT c.part, c.transaction_id, c.id, s.id AS subscription_id, w.eligible,
                       row_number() OVER (PARTITION BY w.eligible ORDER BY c.part, c.transaction_id, c.id) AS n,
                       count(*) OVER (PARTITION BY w.eligible) AS eligible_count
                FROM chunk c
                JOIN trigger_events.subscriptions s
                  ON s.id = ANY (place.ids) AND s.trigger_name = c.trigger_name AND c.op = ANY (s.operations)
                 -- A backfill for one subscription (000005) reaches that one only.
                 AND (c.subscription_name IS NULL OR c.subscription_name = s.name)
                CROSS JOIN LATERAL (
                    SELECT leasing AND s.id = lease_subscription
                           AND (batch_size = 1
                                OR NOT EXISTS (SELECT FROM trigger_events.deliveries d WHERE d.subscription_id = s.id AND d.event_id = c.id))
                           AS eligible
                    OFFSET 0
                ) w
            ), leases AS (
                -- The first `room` of those, in whole requests: consecutive runs of batch_size, each
                -- named by its lowest event id as the claim names a batch (Batches.Claim), even a
                -- batch of one (batch_max_events 1: its request is still the batch body). Of a
                -- subscription that is not batched, each event is a request of its own, in no batch.
                SELECT t.part, t.transaction_id, t.id, t.subscription_id, l.leased, t.n, t.eligible_count,
                       CASE WHEN l.leased AND batched THEN min(t.id) OVER (PARTITION BY l.leased, (t.n - 1) / batch_size) END AS batch_id
                FROM targets t
                CROSS JOIN LATERAL (
                    SELECT t.eligible AND t.n <= least(room / batch_size, t.eligible_count / batch_size) * batch_size AS leased
                    OFFSET 0
                ) l
            ), stop AS (
                -- Alone at its place, the leased subscription whose leases ran out before its events
                -- in this chunk did stops the chunk after its last lease: the rest stays in the log
                -- for the next round, instead of being made pending, to be written again when a
                -- claim takes it. (With others at the place, they need the whole chunk.)
                SELECT l.part, l.transaction_id, l.id
                FROM leases l
                WHERE cardinality(place.ids) = 1 AND l.leased AND l.n = room / batch_size * batch_size AND l.eligible_count > l.n
            ), keyed AS MATERIALIZED (
                -- What the chunk makes (up to the stop), with the key of each delivery of an ordered
                -- subscription: one probe of the event's row. Materialized, so the key is computed
                -- once however many places below read it.
                SELECT l.subscription_id, l.id, l.leased, l.batch_id, ok.key
                FROM leases l
                LEFT JOIN keys k ON k.id = l.subscription_id
                CROSS JOIN (SELECT p.part, p.transaction_id, p.id FROM (SELECT 1) one LEFT JOIN stop p ON true) st
                CROSS JOIN LATERAL (
                    SELECT CASE WHEN k.cols IS NOT NULL THEN (
                        SELECT trigger_events.order_key(k.cols, e.op, e.old_data, e.new_data)
                        FROM trigger_events.event_log e WHERE e.id = l.id) END AS key
                    OFFSET 0
                ) ok
                WHERE st.id IS NULL OR (l.part, l.transaction_id, l.id) <= (st.part, st.transaction_id, st.id)
            ), made_deliveries AS (
                INSERT INTO trigger_events.deliveries (subscription_id, event_id, order_key, order_seq, status, lease_owner, attempts, next_attempt_at, batch_id)
                SELECT l.subscription_id, l.id, l.key, CASE WHEN l.key IS NOT NULL THEN order_number END,
                       -- As the claim leases a pending row (its attempt counted, its lease the claim's).
                       CASE WHEN l.leased THEN 'in_flight' ELSE 'pending' END::trigger_events.delivery_status,
                       CASE WHEN l.leased THEN lease_to END,
                       CASE WHEN l.leased THEN 1 ELSE 0 END,
                       CASE WHEN l.leased THEN lease_ends WHEN w.parked THEN 'infinity' ELSE now() END,
                       l.batch_id
                FROM (SELECT x.*, row_number() OVER (PARTITION BY x.subscription_id, x.key ORDER BY x.id) AS key_rank FROM keyed x) l
                CROSS JOIN LATERAL (
                    -- Parked: an earlier delivery of its key is unfinished, in this chunk (a key's
                    -- deliveries in one batch go in event id order) or before it. The one before it
                    -- is share-locked, so that a result write finishing it meanwhile either waits for
                    -- this commit and then sees this row, or has finished it first and this row is
                    -- not parked; one that is locked now (being finished, or claimed) parks nothing.
                    SELECT parking AND l.key IS NOT NULL AND (l.key_rank > 1 OR EXISTS (
                        SELECT FROM (
                            SELECT b.event_id FROM trigger_events.deliveries b
                            WHERE b.subscription_id = l.subscription_id AND b.order_key = l.key
                              AND (b.order_seq, b.event_id) < (order_number, l.id)
                              AND b.status IN ('pending', 'in_flight') AND b.order_key IS NOT NULL
                            ORDER BY b.order_seq DESC, b.event_id DESC
                            LIMIT 1) latest
                        CROSS JOIN LATERAL (
                            SELECT FROM trigger_events.deliveries p
                            WHERE p.subscription_id = l.subscription_id AND p.event_id = latest.event_id
                              AND p.status IN ('pending', 'in_flight')
                            FOR SHARE OF p SKIP LOCKED) locked)) AS parked
                    OFFSET 0
                ) w
                -- A replay may have made a row already, and so may capture still running the code
                -- of migration 000002 while this one was applied.
                ON CONFLICT DO NOTHING
                RETURNING event_id, lease_owner IS NOT NULL AS leased
            ), last_event AS (
                -- Where the next chunk starts: after the stop, else after the chunk.
                SELECT p.transaction_id, p.id FROM stop p
                UNION ALL
                (SELECT c.transaction_id, c.id FROM chunk c WHERE NOT EXISTS (SELECT FROM stop) ORDER BY c.transaction_id DESC, c.id DESC LIMIT 1)
            )
            SELECT (SELECT count(*) FROM chunk), (SELECT count(*) FROM made_deliveries), l.transaction_id, l.id,
                   ARRAY(SELECT m.event_id FROM made_deliveries m WHERE m.leased),
                   (SELECT count(*) FROM leases x WHERE x.leased), EXISTS (SELECT FROM stop)
            INTO chunk_events, inserted, last_xid, last_id, leased_here, planned, stopped
            FROM (SELECT 1) one LEFT JOIN last_event l ON true;
        END IF;
        made := made + inserted;
        IF leasing THEN
            leased := leased || leased_here;
            room := room - cardinality(leased_here);
            IF batched AND cardinality(leased_here) < planned THEN
                -- A replay made the row of an event meant for a batch after this statement's
                -- snapshot was taken (its row was left as it is, ON CONFLICT): each batch is
                -- named again after its lowest event leased, which its rows all have, so that
                -- no batch is named after an event outside it.
                UPDATE trigger_events.deliveries d
                SET batch_id = f.first
                FROM (SELECT x.batch_id, min(x.event_id) AS first
                      FROM trigger_events.deliveries x
                      WHERE x.subscription_id = lease_subscription AND x.event_id = ANY (leased_here)
                      GROUP BY x.batch_id) f
                WHERE d.subscription_id = lease_subscription AND d.event_id = ANY (leased_here)
                  AND d.batch_id = f.batch_id AND f.first <> f.batch_id;
            END IF;
        END IF;

        IF chunk_events < chunk_limit AND NOT stopped THEN
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
END
$fan_out$;
REVOKE ALL ON FUNCTION trigger_events.fan_out(int[], int, int, uuid, timestamptz) FROM PUBLIC;

-- A worker of schema 28 runs against this schema: the function takes and returns what it did.
UPDATE trigger_events.migrations SET workers_from = 28 WHERE version = 29;
