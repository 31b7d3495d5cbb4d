-- 000006: backfill. One READ event per existing row of an attached table, written in
-- primary-key chunks of short transactions, resumable; a READ event may be meant for one
-- subscription only.
--
-- Locks: ACCESS EXCLUSIVE for a moment on trigger_events.event_log (a nullable column without a
-- default, and the op check swapped without a scan of the log) and on trigger_events.subscriptions
-- (a column default); capture into attached tables waits for this transaction's commit, which
-- scans nothing. No lock on application tables.
--
-- What a backfill locks when it runs: nothing beyond reading rows (ACCESS SHARE on the table, as
-- any SELECT), for one chunk at a time; its own row in trigger_events.backfills while a chunk
-- runs, so that two runs of the same backfill take turns instead of giving a chunk twice.

-- ---------------------------------------------------------------------------------------------
-- READ: the operation of a backfilled row (old null, new the row as it is).
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    old_check name;
BEGIN
    -- 000001 left the check unnamed; PostgreSQL calls it event_log_op_check, but it is found by
    -- its column rather than by that name.
    FOR old_check IN
        SELECT con.conname FROM pg_catalog.pg_constraint con
        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attname = 'op'
        WHERE con.conrelid = 'trigger_events.event_log'::regclass AND con.contype = 'c' AND con.conkey = ARRAY[a.attnum]
    LOOP
        EXECUTE format('ALTER TABLE trigger_events.event_log DROP CONSTRAINT %I', old_check);
    END LOOP;
END
$$;
-- NOT VALID: every row already passed the narrower check this one replaces, and validating would
-- scan the whole log under this migration's ACCESS EXCLUSIVE lock, with every capture waiting.
-- New rows are checked all the same. `ALTER TABLE trigger_events.event_log VALIDATE CONSTRAINT
-- event_log_op_check` may be run at any time; it lets writers write.
ALTER TABLE trigger_events.event_log ADD CONSTRAINT event_log_op_check
    CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'MANUAL', 'READ')) NOT VALID;

-- The subscription a READ event is meant for, when a backfill names one; NULL: every
-- subscription of the trigger whose operations include the event's. Nullable, without a default:
-- adding it rewrites nothing.
ALTER TABLE trigger_events.event_log ADD COLUMN subscription_name text;
COMMENT ON COLUMN trigger_events.event_log.subscription_name IS
    'Set by a backfill for one subscription: only that subscription receives the event. NULL: all of its trigger''s.';

-- A subscription without an operations list receives every operation, READ included. Workers
-- write the list from their YAML file when they start; until then, a row that lists the four
-- operations there were before READ stands for "all".
ALTER TABLE trigger_events.subscriptions ALTER COLUMN operations SET DEFAULT '{INSERT,UPDATE,DELETE,MANUAL,READ}';
UPDATE trigger_events.subscriptions
SET operations = operations || '{READ}'::text[], updated_at = now()
WHERE operations @> '{INSERT,UPDATE,DELETE,MANUAL}' AND NOT 'READ' = ANY (operations);

-- ---------------------------------------------------------------------------------------------
-- fan_out(): as in 000003, and an event meant for one subscription reaches that one only.
--
-- A batch is the events visible in a newer snapshot (batch_end) and not in the place; it is
-- given in chunks of at most max_events, in (transaction_id, id) order, so that one bulk
-- statement of a million rows becomes a million deliveries a chunk at a time, in short
-- transactions, instead of in one. When a batch is done, its snapshot becomes the place.
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
        SELECT (array_agg(p.position))[1] AS position, (array_agg(p.batch_end))[1] AS batch_end,
               p.batch_after_xid, p.batch_after_id, array_agg(p.subscription_id) AS ids
        FROM (SELECT sp.subscription_id, sp.position, sp.batch_end, sp.batch_after_xid, sp.batch_after_id
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
            SELECT c.id, c.transaction_id, c.trigger_name, c.op, c.subscription_name
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
        ), made_deliveries AS (
            INSERT INTO trigger_events.deliveries (subscription_id, event_id)
            SELECT s.id, c.id
            FROM chunk c
            JOIN trigger_events.subscriptions s
              ON s.id = ANY (place.ids) AND s.trigger_name = c.trigger_name AND c.op = ANY (s.operations)
             -- A backfill for one subscription (000005) reaches that one only.
             AND (c.subscription_name IS NULL OR c.subscription_name = s.name)
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
            SET position = target, batch_end = NULL, batch_after_xid = NULL, batch_after_id = NULL, updated_at = now()
            WHERE subscription_id = ANY (place.ids);
        ELSE
            UPDATE trigger_events.subscription_positions
            SET batch_end = target, batch_after_xid = last_xid, batch_after_id = last_id, updated_at = now()
            WHERE subscription_id = ANY (place.ids);
        END IF;
    END LOOP;
    RETURN made;
END
$fan_out$;

-- ---------------------------------------------------------------------------------------------
-- events_not_fanned_out(): as in 000003, counting an event meant for one subscription for that
-- one only.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.events_not_fanned_out(subscription_id int, OUT events bigint, OUT oldest_event_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
    -- Events beyond the subscription's place, found by index: those of transactions that began
    -- after it, and those of each transaction still running then (one lookup each). Less the
    -- part of a batch in progress already given. An event a replay reached before the fan-out
    -- is counted here and as a pending delivery until the fan-out passes it.
    SELECT count(*), min(e.id)
    FROM trigger_events.subscriptions s
    JOIN trigger_events.subscription_positions sp ON sp.subscription_id = s.id
    CROSS JOIN LATERAL (
        SELECT e.id, e.transaction_id FROM trigger_events.event_log e
        WHERE e.transaction_id >= pg_snapshot_xmax(sp.position)
          AND e.trigger_name = s.trigger_name AND e.op = ANY (s.operations)
          AND (e.subscription_name IS NULL OR e.subscription_name = s.name)
        UNION ALL
        SELECT e.id, e.transaction_id
        FROM pg_snapshot_xip(sp.position) AS running(xid)
        CROSS JOIN LATERAL (
            SELECT e.id, e.transaction_id FROM trigger_events.event_log e
            WHERE e.transaction_id = running.xid AND e.trigger_name = s.trigger_name AND e.op = ANY (s.operations)
              AND (e.subscription_name IS NULL OR e.subscription_name = s.name)
        ) e
    ) e
    WHERE s.id = events_not_fanned_out.subscription_id
      AND (sp.batch_end IS NULL
           OR NOT (pg_visible_in_snapshot(e.transaction_id, sp.batch_end)
                   AND (e.transaction_id, e.id) <= (sp.batch_after_xid, sp.batch_after_id)))
$$;

-- ---------------------------------------------------------------------------------------------
-- Backfills: one row per backfill, its progress moved by every chunk in the chunk's own
-- transaction, so an interrupted backfill continues after the last chunk that committed, never
-- giving a row twice or skipping one. A backfill is its arguments (trigger, filter,
-- subscription): the same arguments again resume the running one.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE trigger_events.backfills (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger_name      text        NOT NULL,
    -- The table and its primary key (attribute numbers, so renames are followed) when the
    -- backfill started: a chunk refuses to continue over another table or another key, whose
    -- order the recorded place does not belong to.
    relid             oid         NOT NULL,
    key_attnums       int2[]      NOT NULL,
    -- The boolean expression rows must meet (NULL: every row), and the one subscription the
    -- events are for (NULL: every subscription of the trigger that receives READ).
    filter            text,
    subscription_name text,
    state             text        NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'abandoned')),
    -- The primary key of the last row read, each column as text; NULL before the first chunk.
    last_key          text[],
    rows_read         bigint      NOT NULL DEFAULT 0,
    events            bigint      NOT NULL DEFAULT 0,
    started_by        text        NOT NULL DEFAULT session_user,
    started_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
COMMENT ON TABLE trigger_events.backfills IS
    'Backfills (READ events of existing rows) and how far each got: rows before last_key have their events.';

-- Serves backfill_start's lookup of a running backfill by its arguments, and keeps two
-- starts of the same backfill from making two.
CREATE UNIQUE INDEX backfills_running ON trigger_events.backfills
    (trigger_name, coalesce(subscription_name, ''), coalesce(filter, '')) WHERE state = 'running';

-- ---------------------------------------------------------------------------------------------
-- backfill_start(): checks a backfill's arguments and returns the backfill to run: the running
-- one with the same arguments (resumed), else the last finished one (state 'done': nothing to
-- do; restart => true starts over), else a new one. A bad argument is an error that says which,
-- and records nothing. Run by the schema owner, with the caller's rights.
--
-- The filter must be exactly one boolean expression over the table's columns: it is compiled
-- into every chunk's query, where a second statement or a UNION must not be able to appear.
-- Opening it as a cursor plans exactly one statement (a multi-statement string is refused
-- before anything runs) and checks its columns and type; compiling it as the body of an
-- SQL-standard function (`RETURN (filter)`), whose grammar takes one expression, refuses
-- anything that closes the parenthesis and goes on (`true) UNION ALL SELECT … WHERE (true`).
-- Like a trigger's condition, it is read with search_path = pg_catalog: other tables and one's
-- own functions are written with their schema.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.backfill_start(
    trigger_name text,
    filter text DEFAULT NULL,
    subscription_name text DEFAULT NULL,
    restart boolean DEFAULT false,
    OUT backfill_id bigint,
    OUT state text,
    OUT resumed boolean,
    OUT rows_read bigint,
    OUT events bigint,
    OUT estimated_rows bigint,
    OUT subscriptions int,
    OUT finished_at timestamptz
)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $start$
#variable_conflict use_column
DECLARE
    et trigger_events.event_triggers;
    tbl regclass;
    sub trigger_events.subscriptions;
    keys int2[];
    expr text := nullif(btrim(filter), '');
    b trigger_events.backfills;
    r record;
BEGIN
    SELECT * INTO et FROM trigger_events.event_triggers t WHERE t.name = backfill_start.trigger_name;
    IF et.id IS NULL THEN
        RAISE EXCEPTION 'trigger_events.backfill: no event trigger named %', quote_literal(trigger_name);
    END IF;
    tbl := (SELECT c.oid FROM pg_class c WHERE c.oid = et.relid);
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'trigger_events.backfill: the table of event trigger % no longer exists', quote_literal(trigger_name);
    END IF;
    keys := trigger_events.backfill_key(tbl);
    IF keys IS NULL THEN
        RAISE EXCEPTION 'trigger_events.backfill: table % has no primary key; a backfill reads a table in primary-key order', tbl
            USING HINT = 'Add a primary key, or capture its rows another way.';
    END IF;
    -- The condition is evaluated by the functions capture uses (000004); without them the
    -- events could not be built as capture builds them.
    IF et.condition IS NOT NULL AND to_regproc(format('trigger_events.%I', 'te_' || et.name || '_check')) IS NULL THEN
        RAISE EXCEPTION 'trigger_events.backfill: event trigger % is missing its condition functions', quote_literal(et.name)
            USING HINT = 'Repair it with attach and the same arguments (triggerevents triggers shows its health).';
    END IF;

    IF subscription_name IS NOT NULL THEN
        SELECT * INTO sub FROM trigger_events.subscriptions s WHERE s.name = backfill_start.subscription_name;
        IF sub.id IS NULL THEN
            RAISE EXCEPTION 'trigger_events.backfill: no subscription named %', quote_literal(subscription_name);
        END IF;
        IF sub.trigger_name <> et.name THEN
            RAISE EXCEPTION 'trigger_events.backfill: subscription % receives the events of trigger %, not %',
                quote_literal(sub.name), quote_literal(sub.trigger_name), quote_literal(et.name);
        END IF;
        IF NOT 'READ' = ANY (sub.operations) THEN
            RAISE EXCEPTION 'trigger_events.backfill: subscription % does not receive READ events (its operations: %)',
                quote_literal(sub.name), array_to_string(sub.operations, ', ')
                USING HINT = 'Add READ to its operations, or leave the key out to receive all.';
        END IF;
        subscriptions := 1;
    ELSE
        subscriptions := (SELECT count(*) FROM trigger_events.subscriptions s
                          WHERE s.trigger_name = et.name AND 'READ' = ANY (s.operations));
        IF subscriptions = 0 THEN
            RAISE EXCEPTION 'trigger_events.backfill: no subscription of trigger % receives READ events, so the events would reach nobody',
                quote_literal(et.name)
                USING HINT = 'A subscription receives READ when its operations include it or it has no operations list.';
        END IF;
    END IF;

    IF expr IS NOT NULL THEN
        BEGIN
            -- A constant-false CASE: the filter is checked, and no row is read.
            FOR r IN EXECUTE format('SELECT 1 FROM %s AS "new" WHERE CASE WHEN false THEN (%s' || E'\n' || ') END', tbl, expr)
            LOOP
            END LOOP;
        EXCEPTION
            WHEN invalid_cursor_definition THEN
                RAISE EXCEPTION 'trigger_events.backfill: invalid filter (--where): it must be one boolean expression, not more';
            WHEN undefined_table OR undefined_function THEN
                RAISE EXCEPTION 'trigger_events.backfill: invalid filter (--where): %', SQLERRM
                    USING HINT = 'The filter is read with search_path = pg_catalog, as conditions are: write other tables and your own functions with their schema.';
            WHEN others THEN
                RAISE EXCEPTION 'trigger_events.backfill: invalid filter (--where): %', SQLERRM;
        END;
        BEGIN
            -- One statement now (above), so EXECUTE runs nothing but this CREATE. The table's
            -- columns are unknown here, so only a syntax error counts; the function is dropped
            -- with the subtransaction.
            EXECUTE format('CREATE FUNCTION pg_temp.te_backfill_filter() RETURNS boolean LANGUAGE sql RETURN (%s' || E'\n' || ')', expr);
            RAISE SQLSTATE 'TE001';
        EXCEPTION
            WHEN syntax_error THEN
                RAISE EXCEPTION 'trigger_events.backfill: invalid filter (--where): it must be one boolean expression, not more';
            WHEN others THEN
                NULL;
        END;
    END IF;

    -- Sums of the planner's row counts (leaf partitions for a partitioned table); NULL when a
    -- table was never analyzed.
    estimated_rows := (
        SELECT CASE WHEN bool_and(c.reltuples >= 0) THEN sum(c.reltuples)::bigint END
        FROM pg_class c
        WHERE c.oid = tbl AND c.relkind = 'r'
           OR c.oid IN (SELECT p.relid FROM pg_partition_tree(tbl) p WHERE p.isleaf));

    IF restart THEN
        UPDATE trigger_events.backfills bf
        SET state = 'abandoned', finished_at = now(), updated_at = now()
        WHERE bf.trigger_name = et.name AND bf.state = 'running'
          AND bf.subscription_name IS NOT DISTINCT FROM backfill_start.subscription_name
          AND bf.filter IS NOT DISTINCT FROM expr;
    ELSE
        -- The running one, else the last one that finished.
        SELECT * INTO b FROM trigger_events.backfills bf
        WHERE bf.trigger_name = et.name AND bf.state IN ('running', 'done')
          AND bf.subscription_name IS NOT DISTINCT FROM backfill_start.subscription_name
          AND bf.filter IS NOT DISTINCT FROM expr
        ORDER BY bf.state = 'running' DESC, bf.id DESC
        LIMIT 1;
    END IF;

    IF b.id IS NULL THEN
        INSERT INTO trigger_events.backfills (trigger_name, relid, key_attnums, filter, subscription_name)
        VALUES (et.name, tbl, keys, expr, backfill_start.subscription_name)
        ON CONFLICT (trigger_name, coalesce(subscription_name, ''), coalesce(filter, '')) WHERE state = 'running'
        DO NOTHING
        RETURNING * INTO b;
        resumed := false;
        IF b.id IS NULL THEN
            -- Another start of the same backfill made it first.
            SELECT * INTO b FROM trigger_events.backfills bf
            WHERE bf.trigger_name = et.name AND bf.state = 'running'
              AND bf.subscription_name IS NOT DISTINCT FROM backfill_start.subscription_name
              AND bf.filter IS NOT DISTINCT FROM expr;
            resumed := true;
        END IF;
    ELSE
        resumed := b.state = 'running';
    END IF;

    backfill_id := b.id;
    state := b.state;
    rows_read := b.rows_read;
    events := b.events;
    finished_at := b.finished_at;
END
$start$;

-- The attribute numbers of a table's primary key, in key order; NULL without one. Internal.
CREATE FUNCTION trigger_events.backfill_key(tbl regclass) RETURNS int2[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.indkey::int2[] FROM pg_index i WHERE i.indrelid = tbl AND i.indisprimary
$$;

-- ---------------------------------------------------------------------------------------------
-- backfill_chunk(): one chunk of a backfill, in the caller's transaction: reads the next
-- max_rows rows after the last key done, in primary-key order (an index range scan: a chunk
-- never reads more than max_rows rows, however few the filter keeps), writes one READ event per
-- row the filter and the trigger's condition keep, and records the new last key, all in one
-- transaction. done is true once a chunk reads fewer rows than max_rows, or when the backfill
-- was no longer running. Run by the schema owner, with the caller's rights.
--
-- Events are built as capture builds them (000004), from the trigger as it is now: to_jsonb of
-- the row less the columns that are not payload columns (by attribute number), and only rows
-- the condition keeps, with "old" NULL as on an INSERT. The condition runs through the
-- trigger's own te_<trigger>_condition function, for the whole chunk at once; when it raises
-- on some row, the chunk is read again with te_<trigger>_check, row by row, and a row whose
-- condition raised is written with the error in condition_error, as capture does. A row
-- written while the backfill runs has its own events as well, and its READ, if its chunk
-- reaches it after it committed, shows it as that chunk read it.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.backfill_chunk(
    backfill_id bigint,
    max_rows int DEFAULT 1000,
    OUT rows_read bigint,
    OUT events bigint,
    OUT done boolean
)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The last key is kept as text and read back with the column's type: output settings that make
-- text that reads back as another value (dates in a DMY or MDY style, rounded floats) are
-- pinned. DateStyle sets the output format only; the session's order of day and month stays.
SET DateStyle = ISO
SET IntervalStyle = postgres
SET extra_float_digits = 1
-- A chunk is a short walk of the primary key index in its order; a plan chosen from the
-- statistics of a table never analyzed must not turn it into a sort of the whole table.
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $chunk$
DECLARE
    b trigger_events.backfills;
    et trigger_events.event_triggers;
    rel record;
    keys int2[];
    key_names text[];
    key_types text[];
    key_order text;
    key_text text;
    after text;
    payload text;
    hidden text[];
    match text;
    last text[];
    -- One chunk: the rows (%1$s key order, %2$s the key as text, %3$s whether the filter keeps
    -- the row, %5$s the table, %6$s where the range starts), then their events (%4$s the row
    -- image, %7$s the condition as (passed, error) of the row c.te_row). format() fills every
    -- slot in one pass, so no filter or condition text is ever scanned again for placeholders.
    chunk_template CONSTANT text := $sql$
        WITH te_chunk AS (
            SELECT row_number() OVER (ORDER BY %1$s) AS te_n, %2$s AS te_key,
                   %3$s AS te_match, "new" AS te_row
            FROM %5$s AS "new"
            %6$s
            ORDER BY %1$s
            LIMIT $2
        ), te_events AS (
            INSERT INTO trigger_events.event_log
                (trigger_name, schema_name, table_name, op, old_data, new_data, session_variables, traceparent,
                 condition_error, subscription_name)
            SELECT $3, $4, $5, 'READ', NULL, %4$s, trigger_events.session_variables(), trigger_events.traceparent(),
                   k.error, $6
            FROM te_chunk c
            CROSS JOIN LATERAL %7$s AS k(passed, error)
            WHERE c.te_match AND k.passed
            ORDER BY c.te_n
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM te_chunk), (SELECT count(*) FROM te_events),
               (SELECT c.te_key FROM te_chunk c ORDER BY c.te_n DESC LIMIT 1)
        $sql$;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'trigger_events.backfill: max_rows must be at least 1';
    END IF;
    -- Two runs of the same backfill take turns here: the second reads the place the first wrote.
    SELECT * INTO b FROM trigger_events.backfills bf WHERE bf.id = backfill_id FOR UPDATE;
    IF b.id IS NULL THEN
        RAISE EXCEPTION 'trigger_events.backfill: no backfill %', backfill_id;
    END IF;
    IF b.state <> 'running' THEN
        rows_read := 0;
        events := 0;
        done := true;
        RETURN;
    END IF;

    SELECT * INTO et FROM trigger_events.event_triggers t WHERE t.name = b.trigger_name;
    IF et.id IS NULL OR et.relid <> b.relid THEN
        RAISE EXCEPTION 'trigger_events.backfill: event trigger % was detached or moved to another table since the backfill started', quote_literal(b.trigger_name)
            USING HINT = 'Attach it again, and start over with restart => true (--restart).';
    END IF;
    SELECT n.nspname, c.relname INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = b.relid;
    keys := trigger_events.backfill_key(b.relid);
    IF rel.relname IS NULL OR keys IS DISTINCT FROM b.key_attnums THEN
        RAISE EXCEPTION 'trigger_events.backfill: the primary key of % changed since the backfill started', b.relid::regclass
            USING HINT = 'Start over with restart => true (--restart).';
    END IF;
    SELECT array_agg(a.attname::text ORDER BY k.position), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.position)
    INTO key_names, key_types
    FROM unnest(keys) WITH ORDINALITY AS k(attnum, position)
    JOIN pg_attribute a ON a.attrelid = b.relid AND a.attnum = k.attnum;

    -- "new".a, "new".b; ARRAY["new".a::text, …]; ($1[1]::int, $1[2]::text): a row comparison,
    -- which the primary key index serves as the start of its range.
    SELECT string_agg(format('"new".%I', k), ', ' ORDER BY o),
           'ARRAY[' || string_agg(format('"new".%I::text', k), ', ' ORDER BY o) || ']'
    INTO key_order, key_text
    FROM unnest(key_names) WITH ORDINALITY AS k(k, o);
    IF b.last_key IS NOT NULL THEN
        after := format('WHERE (%s) > (%s)', key_order,
            (SELECT string_agg(format('$1[%s]::%s', o, t), ', ' ORDER BY o) FROM unnest(key_types) WITH ORDINALITY AS k(t, o)));
    END IF;

    -- Row image: as capture builds "new" (install_capture, 000004), the columns that are not
    -- payload columns taken out by their names of now.
    IF et.payload_attnums IS NULL THEN
        payload := 'to_jsonb(c.te_row)';
    ELSE
        payload := 'to_jsonb(c.te_row) - $7';
        hidden := ARRAY(SELECT a.attname::text FROM pg_attribute a
                        WHERE a.attrelid = b.relid AND a.attnum > 0 AND NOT a.attisdropped
                          AND NOT a.attnum = ANY (et.payload_attnums));
    END IF;

    -- The filter is evaluated over the table's columns alone (as backfill_start checked it),
    -- the condition only for the rows the filter keeps.
    match := CASE WHEN b.filter IS NULL THEN 'true' ELSE format('((%s' || E'\n' || ')) IS TRUE', b.filter) END;
    IF et.condition IS NULL THEN
        EXECUTE format(chunk_template, key_order, key_text, match, payload, b.relid::regclass, coalesce(after, ''),
                       '(SELECT true, NULL::text)')
        INTO rows_read, events, last
        USING b.last_key, max_rows, et.name, rel.nspname, rel.relname, b.subscription_name, hidden;
    ELSE
        BEGIN
            EXECUTE format(chunk_template, key_order, key_text, match, payload, b.relid::regclass, coalesce(after, ''),
                           format('(SELECT coalesce(trigger_events.%I(c.te_row, NULL::%s), false), NULL::text)',
                                  'te_' || et.name || '_condition', b.relid::regclass))
            INTO rows_read, events, last
            USING b.last_key, max_rows, et.name, rel.nspname, rel.relname, b.subscription_name, hidden;
        EXCEPTION WHEN others THEN
            -- Some row's condition raised: each row's is evaluated on its own.
            EXECUTE format(chunk_template, key_order, key_text, match, payload, b.relid::regclass, coalesce(after, ''),
                           format('trigger_events.%I(c.te_row, NULL::%s)', 'te_' || et.name || '_check', b.relid::regclass))
            INTO rows_read, events, last
            USING b.last_key, max_rows, et.name, rel.nspname, rel.relname, b.subscription_name, hidden;
        END;
    END IF;

    done := rows_read < max_rows;
    UPDATE trigger_events.backfills bf
    SET last_key = coalesce(last, bf.last_key),
        rows_read = bf.rows_read + backfill_chunk.rows_read,
        events = bf.events + backfill_chunk.events,
        state = CASE WHEN done THEN 'done' ELSE bf.state END,
        finished_at = CASE WHEN done THEN now() END,
        updated_at = now()
    WHERE bf.id = b.id;

    IF events > 0 AND et.notify AND (SELECT idle FROM trigger_events.worker_signal) THEN
        PERFORM trigger_events.wake_worker();
    END IF;
END
$chunk$;

REVOKE ALL ON TABLE trigger_events.backfills FROM PUBLIC;
REVOKE ALL ON FUNCTION trigger_events.backfill_start(text, text, text, boolean), trigger_events.backfill_key(regclass),
    trigger_events.backfill_chunk(bigint, int) FROM PUBLIC;
