-- 000017: capture reads whole rows as rows whatever the columns are called, and a writer whose
-- transaction keeps one snapshot is never failed by the wake-up.
--
-- Locks: SHARE ROW EXCLUSIVE for a moment on every attached table while its capture triggers
-- are replaced (CREATE OR REPLACE TRIGGER), as in 000004. install_capture, backfill_chunk and
-- wake_worker are replaced, their owner, grants and settings kept. No new rights.
--
-- Why:
-- * A table with a column named "new" (or "old") was captured wrongly. Capture of a plain
--   table reads the transition table as "new" and took to_jsonb("new"), which PostgreSQL reads
--   as that column before the whole row: the event's row image was the column's value (a
--   writer could put any JSON there and have it sent as the row), a trigger with
--   payload_columns or a condition failed every write, and adding such a column later broke
--   them. The image is now to_jsonb("new".*), which can only mean the row; a backfill's rows
--   likewise.
-- * A writer at REPEATABLE READ or SERIALIZABLE whose capture found a worker idle in its
--   snapshot, after a worker had changed the flag since, failed with "could not serialize
--   access due to concurrent update": wake_worker() takes the flag with an UPDATE, and a
--   snapshot transaction cannot update a row changed after its snapshot. Such a writer now
--   notifies without taking the flag (at most one notification per transaction, as before).

CREATE OR REPLACE FUNCTION trigger_events.capture_template_version() RETURNS int
LANGUAGE sql IMMUTABLE
RETURN 6;

-- ---------------------------------------------------------------------------------------------
-- wake_worker(): as in 000003, but a transaction that keeps one snapshot does not take the flag.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.wake_worker() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        -- Its snapshot saw the flag idle; a worker may have set it since, and updating that
        -- row would fail the writer's transaction. PostgreSQL folds a transaction's identical
        -- notifications into one.
        PERFORM pg_notify('trigger_events', '');
        RETURN;
    END IF;

    UPDATE trigger_events.worker_signal SET idle = false, updated_at = now()
    WHERE singleton IN (SELECT w.singleton FROM trigger_events.worker_signal w WHERE w.idle FOR UPDATE SKIP LOCKED);
    IF FOUND THEN
        PERFORM pg_notify('trigger_events', '');
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- install_capture(): as in 000004, with row images and condition arguments taken as whole rows.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.install_capture(trigger_id int) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $install$
DECLARE
    et trigger_events.event_triggers;
    relkind "char";
    tbl regclass;
    has_condition boolean;
    payload_new text;
    payload_old text;
    update_when text;
    t record;
    mode "char";
    functions text[] := '{}';
BEGIN
    SELECT * INTO et FROM trigger_events.event_triggers e WHERE e.id = trigger_id;
    SELECT c.relkind INTO relkind FROM pg_class c WHERE c.oid = et.relid;
    IF et.id IS NULL OR relkind IS NULL THEN
        RETURN;
    END IF;
    tbl := et.relid::regclass;
    has_condition := et.condition IS NOT NULL;

    IF has_condition THEN
        PERFORM trigger_events.create_condition_functions(et.name, tbl, relkind, et.condition);
        functions := functions || ARRAY['te_' || et.name || '_condition', 'te_' || et.name || '_check'];
        IF relkind = 'p' THEN
            functions := functions || ('te_' || et.name || '_row');
        END IF;
    END IF;

    -- Row images: to_jsonb of the row, less the columns that are not payload columns. The row is
    -- "new".* (in a row trigger, plpgsql's NEW.*): a bare "new" in a statement over the
    -- transition table means a column of that name first, where the table has one.
    payload_new := CASE WHEN et.payload_attnums IS NULL THEN 'to_jsonb("new".*)' ELSE 'to_jsonb("new".*) - _te_hidden' END;
    payload_old := CASE WHEN et.payload_attnums IS NULL THEN 'to_jsonb("old".*)' ELSE 'to_jsonb("old".*) - _te_hidden' END;

    -- An UPDATE produces an event only if a listened column changed. Compared as text, so types
    -- without an equality operator (json, point, xml) work and a column of such a type added
    -- later never makes the application's UPDATE fail. PostgreSQL keeps the WHEN clause by
    -- attribute number: it follows renames.
    IF et.update_attnums IS NULL THEN
        update_when := '(OLD.*)::text IS DISTINCT FROM (NEW.*)::text';
    ELSE
        SELECT string_agg(format('OLD.%1$I::text IS DISTINCT FROM NEW.%1$I::text', c), ' OR ')
        INTO update_when FROM unnest(trigger_events.column_names(et.relid, et.update_attnums)) AS c;
    END IF;

    FOR t IN
        SELECT x.op, x.tgname, x.function_name, array_agg(x.tgname) OVER (PARTITION BY x.function_name) AS tgnames
        FROM trigger_events.expected_triggers(et.id, et.name, et.operations, relkind) x
    LOOP
        IF NOT t.function_name = ANY (functions) THEN
            functions := functions || t.function_name;
            IF relkind = 'r' AND t.op <> 'UPDATE' THEN
                PERFORM trigger_events.create_capture_function(
                    'trigger_events.' || t.function_name, et.name, tbl, relkind, quote_literal(t.op), t.tgnames,
                    CASE WHEN t.op = 'INSERT' THEN 'FROM te_new AS "new"' ELSE 'FROM te_old AS "old"' END,
                    CASE WHEN t.op = 'INSERT' THEN '"new".*, NULL' ELSE 'NULL, "old".*' END,
                    CASE WHEN t.op = 'INSERT' THEN 'NULL' ELSE payload_old END,
                    CASE WHEN t.op = 'DELETE' THEN 'NULL' ELSE payload_new END,
                    et.payload_attnums, has_condition, NULL, et.notify);
            ELSE
                -- In a row trigger "new" and "old" are plpgsql's NEW and OLD (NULL where the
                -- operation has no such row).
                PERFORM trigger_events.create_capture_function(
                    'trigger_events.' || t.function_name, et.name, tbl, relkind, 'TG_OP', t.tgnames, NULL, NULL,
                    format('CASE WHEN TG_OP = ''INSERT'' THEN NULL ELSE %s END', payload_old),
                    format('CASE WHEN TG_OP = ''DELETE'' THEN NULL ELSE %s END', payload_new),
                    et.payload_attnums, has_condition,
                    CASE WHEN relkind = 'p'
                         THEN format('trigger_events.%I(trigger_events.%I(to_jsonb(NEW)), CASE WHEN TG_OP <> ''INSERT'' THEN trigger_events.%I(to_jsonb(OLD)) END)',
                                     'te_' || et.name || '_check', 'te_' || et.name || '_row', 'te_' || et.name || '_row')
                         ELSE format('trigger_events.%I(NEW, OLD)', 'te_' || et.name || '_check') END,
                    et.notify);
            END IF;
        END IF;

        SELECT tg.tgenabled INTO mode FROM pg_trigger tg WHERE tg.tgrelid = et.relid AND tg.tgname = t.tgname;
        EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER %s ON %s %s EXECUTE FUNCTION trigger_events.%I()',
            t.tgname, t.op, tbl,
            CASE WHEN relkind = 'r' AND t.op = 'INSERT' THEN 'REFERENCING NEW TABLE AS te_new FOR EACH STATEMENT'
                 WHEN relkind = 'r' AND t.op = 'DELETE' THEN 'REFERENCING OLD TABLE AS te_old FOR EACH STATEMENT'
                 WHEN t.op = 'UPDATE' THEN format('FOR EACH ROW WHEN (%s)', update_when)
                 ELSE 'FOR EACH ROW' END,
            t.function_name);
        -- CREATE OR REPLACE TRIGGER resets the mode to ENABLE (origin only).
        IF mode IN ('A', 'R') THEN
            EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER %I', tbl,
                CASE mode WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END, t.tgname);
        END IF;
    END LOOP;

    -- Triggers of operations no longer captured, then functions no longer used.
    FOR t IN
        SELECT tg.tgname FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
        WHERE tg.tgrelid = et.relid AND tg.tgparentid = 0
          AND p.pronamespace = 'trigger_events'::regnamespace
          AND p.proname IN (format('capture_%s_insert', et.id), format('capture_%s_delete', et.id), format('capture_%s_row', et.id))
          AND tg.tgname NOT IN (SELECT x.tgname FROM trigger_events.expected_triggers(et.id, et.name, et.operations, relkind) x)
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, tbl);
    END LOOP;
    PERFORM trigger_events.drop_trigger_functions(et.id, et.name, functions);

    UPDATE trigger_events.event_triggers e SET template_version = trigger_events.capture_template_version()
    WHERE e.id = trigger_id;
END
$install$;



-- ---------------------------------------------------------------------------------------------
-- backfill_chunk(): as in 000006, with each row taken as a whole row.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.backfill_chunk(
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
                   %3$s AS te_match, ("new".*)::%5$s AS te_row
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

-- Every attached trigger moves to the new template now, in this transaction.
SELECT trigger_events.install_capture(et.id) FROM trigger_events.event_triggers et
WHERE et.template_version < trigger_events.capture_template_version() ORDER BY et.id;
