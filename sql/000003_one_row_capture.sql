-- 000003: capture writes the event row only; the worker decides after commit, in commit order,
-- which subscriptions receive it.
--
-- Locks: SHARE on trigger_events.event_log while the transaction_id index builds (capture into
-- attached tables waits for one scan of the log), then SHARE ROW EXCLUSIVE for a moment on every
-- attached table while its capture triggers are replaced (as attach takes). Pending, retrying,
-- in-flight and dead deliveries are left as they are.
--
-- Why: looking up the subscriptions and inserting one delivery row each in the writer's
-- transaction cost about a sixth of a single-row writer's throughput, more with more
-- subscriptions, and tied a subscription's events to whether it was enabled at the instant each
-- writer ran (bench/README.md, "Capture").
--
-- How the worker finds what committed: every event carries its writer's transaction id, and
-- each subscription keeps its place in the log as a snapshot (pg_snapshot): the events it has
-- been given are exactly those whose transaction is visible in that snapshot. fan_out() takes
-- a newer snapshot, inserts deliveries for the events visible in it but not in the old one (in
-- chunks), and stores the new one, as PgQ does between ticks. A transaction that captured early and commits
-- late, or one open for minutes, is in the old snapshot's in-progress list, so it is picked up
-- whenever it commits, never skipped and never given twice.

-- Serves fan_out (`transaction_id >= $xmax AND transaction_id < $xmax'` and `= ANY ($xip)`,
-- in (transaction_id, id) order after a chunk's last event) and the count of events not yet
-- fanned out in subscription_status. Transaction ids only grow, so entries are appended at the
-- right edge.
CREATE INDEX event_log_transaction ON trigger_events.event_log (transaction_id, id);

-- ---------------------------------------------------------------------------------------------
-- Each subscription's place in the log. Apart from subscriptions, whose rows claims lock: the
-- fan-out must not skip a subscription because a claim holds its row.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE trigger_events.subscription_positions (
    subscription_id int         PRIMARY KEY REFERENCES trigger_events.subscriptions (id) ON DELETE CASCADE,
    -- The events of transactions visible in this snapshot have their deliveries; the rest not yet.
    position        pg_snapshot NOT NULL,
    -- A batch being given in chunks: the events visible in batch_end and not in position, up to
    -- (batch_after_xid, batch_after_id) in (transaction_id, id) order, have their deliveries too.
    batch_end       pg_snapshot,
    batch_after_xid xid8,
    batch_after_id  bigint,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((batch_end IS NULL) = (batch_after_xid IS NULL) AND (batch_end IS NULL) = (batch_after_id IS NULL))
);
COMMENT ON TABLE trigger_events.subscription_positions IS
    'Each subscription''s place in event_log: events of transactions visible in position have been fanned out to it.';

-- Existing subscriptions continue from here: capture fanned out everything committed before.
-- Transactions still running the old capture functions fanned out themselves as well; the
-- fan-out gives their events again only where no delivery row exists (ON CONFLICT DO NOTHING).
INSERT INTO trigger_events.subscription_positions (subscription_id, position)
SELECT id, pg_current_snapshot() FROM trigger_events.subscriptions;

-- A new subscription starts at the snapshot of the statement that registers it, however it is
-- registered (a worker, or an INSERT of a DBA's): events committed before are not its own,
-- events of transactions still open then are.
CREATE FUNCTION trigger_events.start_subscription_position() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO trigger_events.subscription_positions (subscription_id, position)
    VALUES (NEW.id, pg_current_snapshot())
    ON CONFLICT (subscription_id) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER subscriptions_start_position AFTER INSERT ON trigger_events.subscriptions
    FOR EACH ROW EXECUTE FUNCTION trigger_events.start_subscription_position();

-- Capture no longer looks subscriptions up.
DROP INDEX trigger_events.subscriptions_trigger;

-- When replay or dead retry scheduled a delivery again: its latency from capture says nothing
-- about the pipeline, so the worker leaves it out of end_to_end_latency_seconds. Nullable,
-- without a default: adding it rewrites nothing.
ALTER TABLE trigger_events.deliveries ADD COLUMN rescheduled_at timestamptz;
COMMENT ON COLUMN trigger_events.deliveries.rescheduled_at IS
    'Set by replay and dead retry: the delivery is a redelivery, kept out of the capture-to-delivery latency.';

-- ---------------------------------------------------------------------------------------------
-- fan_out(): turns committed events into deliveries for the given subscriptions (all when
-- NULL), from each one's place in the log; returns how many deliveries it made. The worker calls
-- it at the start of a claim. Replicas never wait for each other: a subscription whose place
-- another transaction holds is skipped.
--
-- A batch is the events visible in a newer snapshot (batch_end) and not in the place; it is
-- given in chunks of at most max_events, in (transaction_id, id) order, so that one bulk
-- statement of a million rows becomes a million deliveries a chunk at a time, in short
-- transactions, instead of in one. When a batch is done, its snapshot becomes the place.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.fan_out(subscription_ids int[] DEFAULT NULL, max_events int DEFAULT 10000)
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
            SELECT c.id, c.transaction_id, c.trigger_name, c.op
            FROM (
                (SELECT 0 AS part, e.id, e.transaction_id, e.trigger_name, e.op
                 FROM trigger_events.event_log e
                 WHERE e.transaction_id = ANY (ARRAY(SELECT pg_snapshot_xip(place.position)))
                   AND (e.transaction_id, e.id) > (coalesce(place.batch_after_xid, '0'::xid8), coalesce(place.batch_after_id, 0))
                   AND pg_visible_in_snapshot(e.transaction_id, target)
                 ORDER BY e.transaction_id, e.id
                 LIMIT max_events)
                UNION ALL
                (SELECT 1 AS part, e.id, e.transaction_id, e.trigger_name, e.op
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
-- wake_worker(): the wake-up hint, sent once per idle period instead of by every writer. A
-- notifying commit takes a database-wide lock; while a worker stayed idle, every writer
-- notified and 16 writers ran at a quarter of a plain table's speed. Now the first capture
-- after a worker said it is idle takes the flag (idle = false) and notifies; the writers after
-- it read "busy". A writer that finds the flag taken by a transaction still open skips it
-- rather than wait: should that transaction roll back, its flag comes back and the next
-- capture notifies, and until then the worker's polling finds the event. PostgreSQL folds the
-- identical notifications of one transaction into one.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.wake_worker() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE trigger_events.worker_signal SET idle = false, updated_at = now()
    WHERE singleton IN (SELECT w.singleton FROM trigger_events.worker_signal w WHERE w.idle FOR UPDATE SKIP LOCKED);
    IF FOUND THEN
        PERFORM pg_notify('trigger_events', '');
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Capture functions: one INSERT of the events, then the wake-up hint. Replaces the template of
-- 000001; attach and the regeneration below use it.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.create_capture_objects(
    trigger_id int, trigger_name text, schema_name text, table_name text, tbl regclass, relkind "char",
    ops text[], payload_old text, payload_new text, update_when text, cond text, notify boolean
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $create$
DECLARE
    -- format() fills every slot in one pass, so no generated or user text is ever scanned again
    -- for placeholders.
    capture_template CONSTANT text := $sql$
DECLARE
    -- Read once per call: for statement-level functions that is once per statement.
    -- The plpgsql helper only when the setting is there: most transactions never set it.
    _te_session CONSTANT jsonb := CASE WHEN pg_catalog.current_setting('trigger_events.session', true) <> ''
                                       THEN trigger_events.session_variables() END;
    _te_trace CONSTANT text := trigger_events.traceparent();
BEGIN
    INSERT INTO trigger_events.event_log
        (trigger_name, schema_name, table_name, op, old_data, new_data, session_variables, traceparent)
    SELECT %1$L, %2$L, %3$L, %4$s, %5$s, %6$s, _te_session, _te_trace
    %7$s
    WHERE (%8$s
    );
%9$s
    RETURN NULL;
END$sql$;
    -- The wake-up only if the statement captured an event and a worker has said it is idle
    -- (reading the flag costs a buffer hit); wake_worker() then lets one writer send it.
    notify_sql CONSTANT text := CASE WHEN notify THEN $n$
    IF FOUND AND (SELECT idle FROM trigger_events.worker_signal) THEN
        PERFORM trigger_events.wake_worker();
    END IF;$n$ ELSE '' END;
    condition_sql CONSTANT text := coalesce(cond, 'true');
    -- OR REPLACE, for functions and triggers alike: a migration regenerates the capture of an
    -- attached trigger in place, without dropping the PG trigger in between.
    create_function CONSTANT text :=
        'CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L';
    fn text;
BEGIN
    IF relkind = 'r' AND 'INSERT' = ANY (ops) THEN
        fn := format('trigger_events.capture_%s_insert', trigger_id);
        EXECUTE format(create_function, fn, '#variable_conflict use_column' || format(capture_template,
            trigger_name, schema_name, table_name, '''INSERT''', 'NULL', payload_new,
            -- The all-NULL "old" row is joined only when a condition may refer to it.
            CASE WHEN cond IS NULL THEN 'FROM te_new AS "new"'
                 ELSE format('FROM te_new AS "new" LEFT JOIN %s AS "old" ON false', tbl) END,
            condition_sql, notify_sql));
        EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS te_new FOR EACH STATEMENT EXECUTE FUNCTION %s()',
            'te_' || trigger_name || '_insert', tbl, fn);
    END IF;
    IF relkind = 'r' AND 'DELETE' = ANY (ops) THEN
        fn := format('trigger_events.capture_%s_delete', trigger_id);
        EXECUTE format(create_function, fn, '#variable_conflict use_column' || format(capture_template,
            trigger_name, schema_name, table_name, '''DELETE''', payload_old, 'NULL',
            CASE WHEN cond IS NULL THEN 'FROM te_old AS "old"'
                 ELSE format('FROM te_old AS "old" LEFT JOIN %s AS "new" ON false', tbl) END,
            condition_sql, notify_sql));
        EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS te_old FOR EACH STATEMENT EXECUTE FUNCTION %s()',
            'te_' || trigger_name || '_delete', tbl, fn);
    END IF;

    IF 'UPDATE' = ANY (ops) OR relkind = 'p' THEN
        -- In a row trigger "new" and "old" are plpgsql's NEW and OLD (NULL where the operation
        -- has no such row), the same names the statement-level functions give their rows.
        fn := format('trigger_events.capture_%s_row', trigger_id);
        EXECUTE format(create_function, fn, format(capture_template,
            trigger_name, schema_name, table_name, 'TG_OP',
            format('CASE WHEN TG_OP = ''INSERT'' THEN NULL ELSE %s END', payload_old),
            format('CASE WHEN TG_OP = ''DELETE'' THEN NULL ELSE %s END', payload_new),
            '', condition_sql, notify_sql));
        IF 'UPDATE' = ANY (ops) THEN
            EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s()',
                'te_' || trigger_name || '_update', tbl, update_when, fn);
        END IF;
        IF relkind = 'p' AND 'INSERT' = ANY (ops) THEN
            EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s()',
                'te_' || trigger_name || '_insert', tbl, fn);
        END IF;
        IF relkind = 'p' AND 'DELETE' = ANY (ops) THEN
            EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()',
                'te_' || trigger_name || '_delete', tbl, fn);
        END IF;
    END IF;
END
$create$;

-- Generates the capture of one registered event trigger from its registry row: what attach
-- does once its arguments are checked, and what a migration that changes the template runs for
-- every attached trigger. Internal. A trigger whose table is gone is left alone.
CREATE FUNCTION trigger_events.install_capture(trigger_id int) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $install$
DECLARE
    et trigger_events.event_triggers;
    rel record;
    payload_new text;
    payload_old text;
    update_when text;
BEGIN
    SELECT * INTO et FROM trigger_events.event_triggers t WHERE t.id = trigger_id;
    SELECT c.relkind, n.nspname, c.relname INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = et.relid;
    IF et.id IS NULL OR rel.relkind IS NULL THEN
        RETURN;
    END IF;

    -- Row image builders. jsonb_build_object takes at most 100 arguments, so columns are
    -- built in chunks of 50 and concatenated.
    IF et.payload_columns IS NULL THEN
        payload_new := 'to_jsonb("new")';
        payload_old := 'to_jsonb("old")';
    ELSE
        SELECT string_agg(chunk, ' || ') INTO payload_new FROM (
            SELECT 'jsonb_build_object(' || string_agg(format('%L, "new".%I', c, c), ', ' ORDER BY o) || ')' AS chunk
            FROM unnest(et.payload_columns) WITH ORDINALITY AS p(c, o) GROUP BY (o - 1) / 50 ORDER BY (o - 1) / 50) s;
        SELECT string_agg(chunk, ' || ') INTO payload_old FROM (
            SELECT 'jsonb_build_object(' || string_agg(format('%L, "old".%I', c, c), ', ' ORDER BY o) || ')' AS chunk
            FROM unnest(et.payload_columns) WITH ORDINALITY AS p(c, o) GROUP BY (o - 1) / 50 ORDER BY (o - 1) / 50) s;
    END IF;

    -- An UPDATE produces an event only if a listened column changed. Compared as text, so types
    -- without an equality operator (json, point, xml) work and a column of such a type added
    -- later never makes the application's UPDATE fail.
    IF et.update_columns IS NULL THEN
        update_when := '(OLD.*)::text IS DISTINCT FROM (NEW.*)::text';
    ELSE
        SELECT string_agg(format('OLD.%1$I::text IS DISTINCT FROM NEW.%1$I::text', c), ' OR ')
        INTO update_when FROM unnest(et.update_columns) AS c;
    END IF;

    PERFORM trigger_events.create_capture_objects(
        et.id, et.name, rel.nspname, rel.relname, et.relid::regclass, rel.relkind, et.operations,
        payload_old, payload_new, update_when, et.condition, et.notify);
END
$install$;

-- attach(): as in 000001, with the capture generated by install_capture.
CREATE OR REPLACE FUNCTION trigger_events.attach(
    tbl regclass,
    trigger_name text,
    operations text[] DEFAULT '{INSERT,UPDATE,DELETE}',
    update_columns text[] DEFAULT NULL,
    payload_columns text[] DEFAULT NULL,
    condition text DEFAULT NULL,
    notify boolean DEFAULT true
) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $attach$
DECLARE
    rel record;
    existing trigger_events.event_triggers;
    ops text[];
    bad text;
    trigger_id int;
    cond text;
    r record;
BEGIN
    IF tbl IS NULL OR trigger_name IS NULL THEN
        RAISE EXCEPTION 'trigger_events.attach: table and trigger_name are required';
    END IF;
    IF trigger_name !~ '^[A-Za-z0-9_-]{1,48}$' THEN
        RAISE EXCEPTION 'trigger_events.attach: invalid trigger name %: use 1 to 48 letters, digits, ''-'' or ''_''',
            quote_literal(trigger_name);
    END IF;

    SELECT c.oid, c.relkind, n.nspname, c.relname INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'trigger_events.attach: % is not a table', tbl;
    END IF;
    IF rel.nspname = 'trigger_events' THEN
        RAISE EXCEPTION 'trigger_events.attach: cannot attach to the trigger_events schema itself';
    END IF;

    -- Operations: upper-cased, de-duplicated, in a canonical order so the same call compares equal.
    IF operations IS NULL OR cardinality(operations) = 0 THEN
        RAISE EXCEPTION 'trigger_events.attach: operations must name at least one of INSERT, UPDATE, DELETE';
    END IF;
    SELECT string_agg(quote_literal(o), ', ') INTO bad
    FROM unnest(operations) AS o WHERE o IS NULL OR upper(o) NOT IN ('INSERT', 'UPDATE', 'DELETE');
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'trigger_events.attach: unknown operation %; use INSERT, UPDATE or DELETE', bad;
    END IF;
    SELECT array_agg(o ORDER BY array_position('{INSERT,UPDATE,DELETE}'::text[], o)) INTO ops
    FROM (SELECT DISTINCT upper(o) AS o FROM unnest(operations) AS o) s;

    -- Columns must exist (and not be dropped or system columns).
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(coalesce(update_columns, '{}') || coalesce(payload_columns, '{}')) AS c
    WHERE c IS NULL OR NOT EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'trigger_events.attach: unknown column % on %', bad, tbl;
    END IF;
    IF update_columns IS NOT NULL AND cardinality(update_columns) = 0 THEN
        RAISE EXCEPTION 'trigger_events.attach: update_columns is empty; pass NULL to listen to every column';
    END IF;
    IF payload_columns IS NOT NULL AND cardinality(payload_columns) = 0 THEN
        RAISE EXCEPTION 'trigger_events.attach: payload_columns is empty; pass NULL to send every column';
    END IF;
    update_columns := (SELECT array_agg(DISTINCT c ORDER BY c) FROM unnest(update_columns) AS c);
    payload_columns := (SELECT array_agg(c ORDER BY o) FROM (
        SELECT c, min(o) AS o FROM unnest(payload_columns) WITH ORDINALITY AS p(c, o) GROUP BY c) s);
    cond := nullif(btrim(condition), '');

    SELECT * INTO existing FROM trigger_events.event_triggers et WHERE et.name = attach.trigger_name FOR UPDATE;
    IF existing.id IS NOT NULL AND existing.relid <> tbl THEN
        RAISE EXCEPTION 'trigger_events.attach: trigger name % is already used on table %',
            quote_literal(trigger_name), existing.relid::regclass;
    END IF;
    IF existing.id IS NOT NULL
       AND existing.operations = ops
       AND existing.update_columns IS NOT DISTINCT FROM update_columns
       AND existing.payload_columns IS NOT DISTINCT FROM payload_columns
       AND existing.condition IS NOT DISTINCT FROM cond
       AND existing.notify = attach.notify THEN
        RETURN 'unchanged';
    END IF;

    -- The condition must be one boolean expression over OLD and NEW. Opening it as a cursor
    -- plans it as exactly one statement (a multi-statement string is refused before anything
    -- runs), which is what keeps the text from ever being more than an expression when it is
    -- compiled into the capture function.
    IF cond IS NOT NULL THEN
        BEGIN
            FOR r IN EXECUTE format(
                'SELECT 1 FROM %s AS "new" LEFT JOIN %s AS "old" ON false WHERE (%s)' || E'\n' || 'LIMIT 0',
                tbl, tbl, cond)
            LOOP
            END LOOP;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'trigger_events.attach: invalid condition: %', SQLERRM;
        END;
    END IF;

    IF existing.id IS NOT NULL THEN
        trigger_id := existing.id;
        -- Dropped first: the new operations may need fewer PG triggers than the old ones.
        PERFORM trigger_events.drop_capture_objects(existing.id);
        UPDATE trigger_events.event_triggers et
        SET operations = ops, update_columns = attach.update_columns,
            payload_columns = attach.payload_columns, condition = cond, notify = attach.notify,
            updated_at = now()
        WHERE et.id = trigger_id;
    ELSE
        INSERT INTO trigger_events.event_triggers (name, relid, operations, update_columns, payload_columns, condition, notify)
        VALUES (trigger_name, tbl, ops, update_columns, payload_columns, cond, notify)
        RETURNING id INTO trigger_id;
    END IF;

    PERFORM trigger_events.install_capture(trigger_id);
    RETURN CASE WHEN existing.id IS NULL THEN 'created' ELSE 'replaced' END;
END
$attach$;

-- invoke(): a MANUAL event, the event row only, like capture.
CREATE OR REPLACE FUNCTION trigger_events.invoke(trigger_name text, payload jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing trigger_events.event_triggers;
    rel record;
    new_event_id bigint;
BEGIN
    SELECT * INTO existing FROM trigger_events.event_triggers et WHERE et.name = invoke.trigger_name;
    IF existing.id IS NULL THEN
        RAISE EXCEPTION 'trigger_events.invoke: no event trigger named %', quote_literal(trigger_name);
    END IF;
    SELECT n.nspname, c.relname INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = existing.relid;
    INSERT INTO trigger_events.event_log
        (trigger_name, schema_name, table_name, op, old_data, new_data, session_variables, traceparent)
    VALUES (existing.name, coalesce(rel.nspname, ''), coalesce(rel.relname, ''), 'MANUAL', NULL, payload,
            trigger_events.session_variables(), trigger_events.traceparent())
    RETURNING id INTO new_event_id;
    IF existing.notify AND (SELECT idle FROM trigger_events.worker_signal) THEN
        PERFORM trigger_events.wake_worker();
    END IF;
    RETURN new_event_id;
END
$$;

-- Every attached trigger moves to the new template now, in this transaction.
SELECT trigger_events.install_capture(et.id) FROM trigger_events.event_triggers et ORDER BY et.id;

-- ---------------------------------------------------------------------------------------------
-- The events committed for a subscription that no fan-out has turned into deliveries yet (a
-- worker is down, say), and the oldest of them. A function with its own settings rather than a
-- part of the view: the planner's guesses for these scans made the whole view cost enough to be
-- compiled by JIT, two seconds of CPU at every metrics refresh.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.events_not_fanned_out(subscription_id int, OUT events bigint, OUT oldest_event_id bigint)
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
        UNION ALL
        SELECT e.id, e.transaction_id
        FROM pg_snapshot_xip(sp.position) AS running(xid)
        CROSS JOIN LATERAL (
            SELECT e.id, e.transaction_id FROM trigger_events.event_log e
            WHERE e.transaction_id = running.xid AND e.trigger_name = s.trigger_name AND e.op = ANY (s.operations)
        ) e
    ) e
    WHERE s.id = events_not_fanned_out.subscription_id
      AND (sp.batch_end IS NULL
           OR NOT (pg_visible_in_snapshot(e.transaction_id, sp.batch_end)
                   AND (e.transaction_id, e.id) <= (sp.batch_after_xid, sp.batch_after_id)))
$$;

-- subscription_status: pending also counts the events not fanned out yet, and the oldest
-- pending age looks at them too. The rows come from a function with JIT off: a subscriptions
-- table too small for autovacuum ever to analyze is guessed at 530 rows, and the view's cost
-- then crossed jit_above_cost, compiling it at every metrics refresh.
CREATE FUNCTION trigger_events.subscription_status_rows()
RETURNS TABLE (subscription text, trigger_name text, enabled boolean, pending bigint, retrying bigint,
               in_flight bigint, dead bigint, oldest_pending_captured_at timestamptz, oldest_pending_age_seconds double precision)
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
LEFT JOIN LATERAL trigger_events.events_not_fanned_out(s.id) u ON true
LEFT JOIN trigger_events.event_log oldest
       ON oldest.id = least(p.oldest_event_id, f.oldest_event_id, u.oldest_event_id)
LEFT JOIN LATERAL (
    SELECT count(*) AS dead FROM trigger_events.deliveries dl
    WHERE dl.subscription_id = s.id AND dl.status = 'dead'
) dead ON true;
$$;

CREATE OR REPLACE VIEW trigger_events.subscription_status AS
SELECT * FROM trigger_events.subscription_status_rows();

REVOKE ALL ON TABLE trigger_events.subscription_positions FROM PUBLIC;
-- subscription_status reads through two functions that run as the schema owner, as a view
-- reads its tables: a role that may read it needs EXECUTE on subscription_status_rows() too.
REVOKE ALL ON FUNCTION trigger_events.subscription_status_rows(), trigger_events.events_not_fanned_out(int) FROM PUBLIC;
REVOKE ALL ON FUNCTION trigger_events.fan_out(int[], int), trigger_events.install_capture(int),
    trigger_events.start_subscription_position(), trigger_events.wake_worker() FROM PUBLIC;
