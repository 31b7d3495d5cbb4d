-- 000004: capture that holds at the edges. Only the attached table produces its events;
-- a condition that raises never fails the write; renames, added, dropped and retyped columns
-- and a move to another schema never make writes fail; attached triggers record the template
-- they run and are regenerated when it changes; attach and detach wait for their lock at most
-- lock_timeout.
--
-- Locks: SHARE ROW EXCLUSIVE for a moment on every attached table while its capture triggers
-- are replaced (CREATE OR REPLACE TRIGGER). Adding two nullable columns and a partial index that
-- matches no row rewrites nothing.
--
-- What each schema change does to an attached table, and why (sql/README.md has the table):
-- capture no longer compiles names in. The table's name and schema are read from the firing
-- trigger (TG_TABLE_SCHEMA, TG_TABLE_NAME) when the event is captured; payload columns are kept
-- by attribute number, not by name; update_columns live in the PostgreSQL trigger's WHEN
-- clause and a condition in a SQL function with a parsed body, both of which PostgreSQL stores
-- by attribute number and keeps dependencies of, so it follows a rename by itself and refuses
-- to drop or retype a column they use, naming the object (te_<trigger>_update,
-- te_<trigger>_condition).

-- The error of a condition that raised: the event was captured as if it were true.
ALTER TABLE trigger_events.event_log ADD COLUMN condition_error text;
-- Counts the events whose condition raised, per trigger (trigger_events.triggers). Matches no row
-- of a healthy log, so it costs capture nothing.
CREATE INDEX event_log_condition_errors ON trigger_events.event_log (trigger_name)
    WHERE condition_error IS NOT NULL;

-- Columns by attribute number, so the registry follows renames; the names given to attach stay
-- in update_columns and payload_columns as they were given, and trigger_events.triggers shows
-- the current ones.
ALTER TABLE trigger_events.event_triggers
    ADD COLUMN update_attnums int2[],
    ADD COLUMN payload_attnums int2[],
    -- The capture template the trigger's functions were generated from; 0 before this file.
    ADD COLUMN template_version int NOT NULL DEFAULT 0;
UPDATE trigger_events.event_triggers et
SET update_attnums = (SELECT array_agg(a.attnum ORDER BY a.attnum) FROM pg_attribute a
                      WHERE a.attrelid = et.relid AND a.attname = ANY (et.update_columns) AND NOT a.attisdropped),
    payload_attnums = (SELECT array_agg(a.attnum ORDER BY a.attnum) FROM pg_attribute a
                       WHERE a.attrelid = et.relid AND a.attname = ANY (et.payload_columns) AND NOT a.attisdropped);

-- ---------------------------------------------------------------------------------------------
-- The version of the capture template below. A migration that changes the template raises it
-- and ends by regenerating every trigger below it (as this file does).
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.capture_template_version() RETURNS int
LANGUAGE sql IMMUTABLE
RETURN 4;

-- The names of the columns of table relid at these attribute numbers, in that order; dropped
-- ones are left out.
CREATE FUNCTION trigger_events.column_names(relid oid, attnums int2[]) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN attnums IS NOT NULL THEN coalesce(array_agg(a.attname::text ORDER BY u.o), '{}') END
    FROM unnest(attnums) WITH ORDINALITY AS u(attnum, o)
    JOIN pg_attribute a ON a.attrelid = relid AND a.attnum = u.attnum AND NOT a.attisdropped
$$;

-- The PostgreSQL triggers an event trigger needs on its table and the capture function each
-- calls: statement-level INSERT and DELETE on plain tables, one row-level function for the rest.
CREATE FUNCTION trigger_events.expected_triggers(trigger_id int, trigger_name text, ops text[], relkind "char")
RETURNS TABLE (op text, tgname text, function_name text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o, 'te_' || trigger_name || '_' || lower(o),
           format('capture_%s_%s', trigger_id, CASE WHEN relkind = 'r' AND o <> 'UPDATE' THEN lower(o) ELSE 'row' END)
    FROM unnest(ops) AS o
$$;

-- ---------------------------------------------------------------------------------------------
-- Capture functions. Every one:
--   - runs only from the trigger attach made (TG_RELID and TG_NAME are checked, partitions of a
--     partitioned table included) and raises otherwise, recording nothing; EXECUTE is its
--     owner's alone, so no other role can put it on a trigger of its own anyway;
--   - names the table as it is called when the event is captured;
--   - keeps payload columns by attribute number: to_jsonb of the row, less the other columns;
--   - evaluates a condition through trigger_events.te_<trigger>_condition(new, old); when it
--     raises, the row is captured anyway with the error in condition_error. Statement-level
--     functions try the whole statement in one subtransaction first and evaluate row by row
--     (one subtransaction each) only when some row's condition raised; row-level functions
--     evaluate in a subtransaction per row. Triggers without a condition have no subtransaction.
-- ---------------------------------------------------------------------------------------------
DROP FUNCTION trigger_events.create_capture_objects(int, text, text, text, regclass, "char", text[], text, text, text, text, boolean);

CREATE FUNCTION trigger_events.create_capture_function(
    fn text, trigger_name text, tbl regclass, relkind "char", op_sql text, tgnames text[],
    source_sql text, condition_args text, payload_old text, payload_new text, payload_attnums int2[],
    has_condition boolean, check_sql text, notify boolean
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $create$
DECLARE
    condition_fn CONSTANT text := format('trigger_events.%I', 'te_' || trigger_name || '_condition');
    check_fn CONSTANT text := format('trigger_events.%I', 'te_' || trigger_name || '_check');
    is_row CONSTANT boolean := source_sql IS NULL;
    declarations text;
    guard text;
    insert_columns CONSTANT text :=
        'INSERT INTO trigger_events.event_log (trigger_name, schema_name, table_name, op, old_data, new_data, session_variables, traceparent, condition_error)';
    select_list text;
    body text;
BEGIN
    declarations := $d$
    -- Read once per call: for statement-level functions that is once per statement. The plpgsql
    -- helper only when the setting is there: most transactions never set it.
    _te_session CONSTANT jsonb := CASE WHEN pg_catalog.current_setting('trigger_events.session', true) <> ''
                                       THEN trigger_events.session_variables() END;
    _te_trace CONSTANT text := trigger_events.traceparent();
    _te_schema text := TG_TABLE_SCHEMA;
    _te_table text := TG_TABLE_NAME;
    _te_condition_error text;$d$;
    IF payload_attnums IS NOT NULL THEN
        -- The columns that are not payload columns (added ones included), by their names of now.
        declarations := declarations || format($d$
    _te_hidden CONSTANT text[] := ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnum = ANY (%L::int2[]));$d$,
        tbl::oid, payload_attnums);
    END IF;

    IF relkind = 'p' THEN
        -- Row triggers fire on the partitions: the event names the attached parent.
        guard := format($g$
    SELECT n.nspname, c.relname INTO _te_schema, _te_table
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = %1$s AND TG_NAME = ANY (%2$L::text[])
      AND %1$s::oid IN (SELECT p.relid::oid FROM pg_catalog.pg_partition_ancestors(TG_RELID) AS p);
    IF NOT FOUND THEN$g$, tbl::oid, tgnames);
    ELSE
        guard := format($g$
    IF TG_RELID <> %s OR NOT TG_NAME = ANY (%L::text[]) THEN$g$, tbl::oid, tgnames);
    END IF;
    guard := guard || format($g$
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege', MESSAGE = pg_catalog.format(
            'trigger_events: the capture of event trigger %%s runs only from the triggers attach made; fired by %%s on %%s, it recorded nothing',
            %L, TG_NAME, TG_RELID::regclass);
    END IF;$g$, trigger_name);

    select_list := format('SELECT %L, _te_schema, _te_table, %s, %s, %s, _te_session, _te_trace',
        trigger_name, op_sql, payload_old, payload_new);

    IF is_row THEN
        IF has_condition THEN
            -- One subtransaction per row, only for triggers with a condition.
            body := format($b$
    SELECT c.passed, c.error INTO STRICT _te_passed, _te_condition_error FROM %s AS c;
    IF NOT _te_passed THEN
        RETURN NULL;
    END IF;$b$, check_sql);
            declarations := declarations || E'\n    _te_passed boolean;';
        ELSE
            body := '';
        END IF;
        body := body || format(E'\n    %s\n    %s, _te_condition_error;', insert_columns, select_list);
    ELSIF has_condition THEN
        body := format($b$
    BEGIN
        %1$s
        %2$s, NULL %3$s
        WHERE %4$s(%6$s);
    EXCEPTION WHEN others THEN
        -- Some row's condition raised: each row's is evaluated on its own, and a row whose
        -- condition raises is captured with the error.
        %1$s
        %2$s, c.error %3$s
        CROSS JOIN LATERAL %5$s(%6$s) AS c
        WHERE c.passed;
    END;$b$, insert_columns, select_list, source_sql, condition_fn, check_fn, condition_args);
    ELSE
        body := format(E'\n    %s\n    %s, NULL %s;', insert_columns, select_list, source_sql);
    END IF;

    IF notify THEN
        -- The wake-up only if the statement captured an event and a worker has said it is
        -- idle (reading the flag costs a buffer hit); wake_worker() then lets one writer send it.
        body := body || $n$
    IF FOUND AND (SELECT idle FROM trigger_events.worker_signal) THEN
        PERFORM trigger_events.wake_worker();
    END IF;$n$;
    END IF;

    -- OR REPLACE: a migration regenerates the capture of an attached trigger in place, without
    -- dropping the PostgreSQL trigger in between. In statement-level functions "new" and "old"
    -- are the transition tables' rows, not plpgsql's (NULL) NEW and OLD.
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L',
        fn,
        CASE WHEN is_row THEN '' ELSE '#variable_conflict use_column' END
        || E'\nDECLARE' || declarations || E'\nBEGIN' || guard || body || E'\n    RETURN NULL;\nEND');
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);
END
$create$;

-- The condition as two functions of the row: te_<trigger>_condition(new, old), whose body
-- PostgreSQL parses once (so a rename is followed, a drop or retype of a column it uses is
-- refused naming it, and the grammar admits one expression and nothing more), and
-- te_<trigger>_check(new, old), which evaluates it in a subtransaction and returns the error
-- instead of raising. The SQL function is inlined into the capture query.
CREATE FUNCTION trigger_events.create_condition_functions(trigger_name text, tbl regclass, relkind "char", cond text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $cond$
DECLARE
    condition_fn CONSTANT text := format('trigger_events.%I', 'te_' || trigger_name || '_condition');
    check_fn CONSTANT text := format('trigger_events.%I', 'te_' || trigger_name || '_check');
    row_fn CONSTANT text := format('trigger_events.%I', 'te_' || trigger_name || '_row');
BEGIN
    EXECUTE format('CREATE OR REPLACE FUNCTION %s("new" %s, "old" %s) RETURNS boolean LANGUAGE sql RETURN (%s' || E'\n)',
        condition_fn, tbl, tbl, cond);
    EXECUTE format($f$CREATE OR REPLACE FUNCTION %s("new" %s, "old" %s, OUT passed boolean, OUT error text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    passed := coalesce(%s($1, $2), false);
EXCEPTION WHEN others THEN
    passed := true;
    error := SQLSTATE || ': ' || SQLERRM;
END
$body$$f$, check_fn, tbl, tbl, condition_fn);
    EXECUTE format('REVOKE ALL ON FUNCTION %s(%s, %s) FROM PUBLIC', condition_fn, tbl, tbl);
    EXECUTE format('REVOKE ALL ON FUNCTION %s(%s, %s) FROM PUBLIC', check_fn, tbl, tbl);
    IF relkind = 'p' THEN
        -- A partition's row has the partition's row type: converted to the parent's by column
        -- name, since a partition may order its columns differently.
        EXECUTE format('CREATE OR REPLACE FUNCTION %s(r jsonb) RETURNS %s LANGUAGE sql RETURN jsonb_populate_record(NULL::%s, r)',
            row_fn, tbl, tbl);
        EXECUTE format('REVOKE ALL ON FUNCTION %s(jsonb) FROM PUBLIC', row_fn);
    END IF;
END
$cond$;

-- Drops the functions of one event trigger that are not the given ones: all of them when keep
-- is empty. Internal.
CREATE FUNCTION trigger_events.drop_trigger_functions(trigger_id int, trigger_name text, keep text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure AS fn FROM pg_proc p
        WHERE p.pronamespace = 'trigger_events'::regnamespace
          AND p.proname IN (format('capture_%s_insert', trigger_id), format('capture_%s_delete', trigger_id),
                            format('capture_%s_row', trigger_id), 'te_' || trigger_name || '_condition',
                            'te_' || trigger_name || '_check', 'te_' || trigger_name || '_row')
          AND NOT p.proname = ANY (keep)
    LOOP
        EXECUTE format('DROP FUNCTION %s', f.fn);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- install_capture(): generates the capture of one registered event trigger from its registry
-- row. What attach does once its arguments are checked, and what a migration that changes the
-- template runs for every attached trigger. A trigger whose table is gone is left alone.
-- A PostgreSQL trigger keeps its enabled mode (ENABLE ALWAYS, ENABLE REPLICA) when replaced;
-- one a table owner disabled is enabled again. Triggers of operations no longer captured are
-- dropped, which takes ACCESS EXCLUSIVE on the table.
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

    -- Row images: to_jsonb of the row, less the columns that are not payload columns.
    payload_new := CASE WHEN et.payload_attnums IS NULL THEN 'to_jsonb("new")' ELSE 'to_jsonb("new") - _te_hidden' END;
    payload_old := CASE WHEN et.payload_attnums IS NULL THEN 'to_jsonb("old")' ELSE 'to_jsonb("old") - _te_hidden' END;

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
                    CASE WHEN t.op = 'INSERT' THEN '"new", NULL' ELSE 'NULL, "old"' END,
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
-- trigger_health(): ok; missing (the table, one of its PostgreSQL triggers or a capture function
-- is gone); disabled (a table owner disabled one of its triggers); outdated (generated from an
-- older template than this schema's). attach with the same arguments repairs the last three.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.trigger_health(trigger_id int) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN c.oid IS NULL THEN 'missing'
        WHEN EXISTS (
            SELECT 1 FROM trigger_events.expected_triggers(et.id, et.name, et.operations, c.relkind) x
            WHERE NOT EXISTS (
                SELECT 1 FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
                WHERE tg.tgrelid = c.oid AND tg.tgname = x.tgname AND tg.tgparentid = 0
                  AND p.pronamespace = 'trigger_events'::regnamespace AND p.proname = x.function_name))
            THEN 'missing'
        WHEN et.condition IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_proc p WHERE p.pronamespace = 'trigger_events'::regnamespace
              AND p.proname = 'te_' || et.name || '_check')
            THEN 'missing'
        WHEN EXISTS (
            SELECT 1 FROM trigger_events.expected_triggers(et.id, et.name, et.operations, c.relkind) x
            JOIN pg_trigger tg ON tg.tgrelid = c.oid AND tg.tgname = x.tgname
            WHERE tg.tgenabled = 'D')
            THEN 'disabled'
        WHEN et.template_version < trigger_events.capture_template_version() THEN 'outdated'
        ELSE 'ok'
    END
    FROM trigger_events.event_triggers et
    LEFT JOIN pg_class c ON c.oid = et.relid
    WHERE et.id = trigger_id
$$;

-- Takes a lock on an attached table within lock_timeout, or raises an error that says so, so
-- that a busy table gives a clear error instead of a queue of application queries behind a
-- waiting attach. A role that may create triggers on the table (TRIGGER) but not lock it (LOCK
-- in these modes needs UPDATE, DELETE or TRUNCATE, or ownership) skips the LOCK: the trigger
-- DDL that follows takes the same lock itself, under the same lock_timeout. The caller puts
-- the session's own lock_timeout back when its DDL is done.
CREATE FUNCTION trigger_events.lock_table(caller text, tbl regclass, mode text, lock_timeout interval) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF lock_timeout IS NULL OR lock_timeout < interval '0' THEN
        RAISE EXCEPTION 'trigger_events.%: lock_timeout must be zero (wait without limit) or more', caller;
    END IF;
    PERFORM set_config('lock_timeout', (extract(epoch FROM lock_timeout) * 1000)::bigint::text, true);
    IF NOT (pg_has_role((SELECT c.relowner FROM pg_class c WHERE c.oid = tbl), 'USAGE')
            OR has_table_privilege(tbl, 'UPDATE') OR has_table_privilege(tbl, 'DELETE')
            OR has_table_privilege(tbl, 'TRUNCATE')) THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('LOCK TABLE %s IN %s MODE', tbl, mode);
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'trigger_events.%: % is busy: could not take its % lock within %; retry when it is quieter, or pass a longer lock_timeout',
            caller, tbl, mode, lock_timeout USING ERRCODE = 'lock_not_available';
    END;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- attach(): as in 000003, and:
--   - lock_timeout: how long to wait for the table's lock (SHARE ROW EXCLUSIVE, or ACCESS
--     EXCLUSIVE when a replacing call captures fewer operations and drops a trigger);
--   - the same arguments repair a trigger that is not healthy ('repaired');
--   - a name whose table was dropped may be attached again, to any table;
--   - a condition is compiled as the body of a SQL function, which admits exactly one
--     expression; subqueries, aggregates, window and set-returning functions are refused.
-- ---------------------------------------------------------------------------------------------
DROP FUNCTION trigger_events.attach(regclass, text, text[], text[], text[], text, boolean);
CREATE FUNCTION trigger_events.attach(
    tbl regclass,
    trigger_name text,
    operations text[] DEFAULT '{INSERT,UPDATE,DELETE}',
    update_columns text[] DEFAULT NULL,
    payload_columns text[] DEFAULT NULL,
    condition text DEFAULT NULL,
    notify boolean DEFAULT true,
    lock_timeout interval DEFAULT '5 seconds'
) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $attach$
DECLARE
    rel record;
    existing trigger_events.event_triggers;
    table_gone boolean;
    ops text[];
    bad text;
    trigger_id int;
    cond text;
    new_update_attnums int2[];
    new_payload_attnums int2[];
    flags text;
    probe text;
    r record;
    session_lock_timeout CONSTANT text := current_setting('lock_timeout');
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
    new_update_attnums := (SELECT array_agg(a.attnum ORDER BY a.attnum) FROM pg_attribute a
                       WHERE a.attrelid = tbl AND a.attname = ANY (update_columns) AND NOT a.attisdropped);
    new_payload_attnums := (SELECT array_agg(a.attnum ORDER BY a.attnum) FROM pg_attribute a
                        WHERE a.attrelid = tbl AND a.attname = ANY (payload_columns) AND NOT a.attisdropped);
    cond := nullif(btrim(condition), '');

    SELECT * INTO existing FROM trigger_events.event_triggers et WHERE et.name = attach.trigger_name FOR UPDATE;
    table_gone := existing.id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = existing.relid);
    IF existing.id IS NOT NULL AND existing.relid <> tbl AND NOT table_gone THEN
        RAISE EXCEPTION 'trigger_events.attach: trigger name % is already used on table %',
            quote_literal(trigger_name), existing.relid::regclass;
    END IF;
    IF existing.id IS NOT NULL AND NOT table_gone
       AND existing.operations = ops
       AND existing.update_attnums IS NOT DISTINCT FROM new_update_attnums
       AND existing.payload_attnums IS NOT DISTINCT FROM new_payload_attnums
       AND existing.condition IS NOT DISTINCT FROM cond
       AND existing.notify = attach.notify THEN
        IF trigger_events.trigger_health(existing.id) = 'ok' THEN
            RETURN 'unchanged';
        END IF;
        PERFORM trigger_events.lock_table('attach', tbl, 'SHARE ROW EXCLUSIVE', attach.lock_timeout);
        PERFORM trigger_events.install_capture(existing.id);
        PERFORM set_config('lock_timeout', session_lock_timeout, true);
        RETURN 'repaired';
    END IF;

    -- The condition must be one boolean expression over OLD and NEW. First opened as a cursor,
    -- which plans exactly one statement and runs nothing (a second statement is refused before
    -- anything runs); then compiled, in the same parentheses, as the body of a SQL function,
    -- whose RETURN admits exactly one expression (a UNION or a comment swallowing the closing
    -- parenthesis is a syntax error); then read back from PostgreSQL's parse tree.
    IF cond IS NOT NULL THEN
        probe := 'te_attach_probe_' || pg_backend_pid();
        BEGIN
            -- Rows of the table's type, not the table: a role that may only create triggers on
            -- it (TRIGGER, no SELECT) can attach a condition too.
            FOR r IN EXECUTE format('SELECT (%s' || E'\n' || ') FROM (SELECT (NULL::%s).*) AS "new", (SELECT (NULL::%s).*) AS "old" LIMIT 0',
                                    cond, tbl, tbl)
            LOOP
            END LOOP;
            EXECUTE format('CREATE FUNCTION pg_temp.%I("new" %s, "old" %s) RETURNS boolean LANGUAGE sql RETURN (%s' || E'\n)',
                probe, tbl, tbl, cond);
            SELECT concat_ws(', ',
                       CASE WHEN p.prosqlbody::text ~ ':hasSubLinks true' THEN 'a subquery' END,
                       CASE WHEN p.prosqlbody::text ~ ':hasAggs true' THEN 'an aggregate' END,
                       CASE WHEN p.prosqlbody::text ~ ':hasWindowFuncs true' THEN 'a window function' END,
                       CASE WHEN p.prosqlbody::text ~ ':hasTargetSRFs true' THEN 'a set-returning function' END)
            INTO flags
            FROM pg_proc p WHERE p.proname = probe AND p.pronamespace = pg_my_temp_schema();
        EXCEPTION WHEN others THEN
            -- A field NEW or OLD lacks reads "missing FROM-clause entry for table new".
            RAISE EXCEPTION 'trigger_events.attach: invalid condition: %', CASE SQLSTATE
                WHEN '42P01' THEN SQLERRM || format(' (NEW and OLD have the columns of %s: is one misspelt?)', tbl)
                WHEN '42P13' THEN 'it is not a boolean expression'
                ELSE SQLERRM END;
        END;
        EXECUTE format('DROP FUNCTION pg_temp.%I(%s, %s)', probe, tbl, tbl);
        IF flags <> '' THEN
            RAISE EXCEPTION 'trigger_events.attach: invalid condition: it contains %; a condition is one expression over the row (OLD, NEW) and the functions it calls', flags;
        END IF;
    END IF;

    -- Dropping a trigger (fewer operations than before) takes ACCESS EXCLUSIVE; creating or
    -- replacing one takes SHARE ROW EXCLUSIVE.
    PERFORM trigger_events.lock_table('attach', tbl,
        CASE WHEN existing.id IS NOT NULL AND NOT table_gone AND NOT existing.operations <@ ops
             THEN 'ACCESS EXCLUSIVE' ELSE 'SHARE ROW EXCLUSIVE' END,
        attach.lock_timeout);

    IF existing.id IS NOT NULL THEN
        trigger_id := existing.id;
        IF table_gone THEN
            -- The capture functions of the dropped table's trigger are replaced by install_capture.
            PERFORM trigger_events.drop_trigger_functions(existing.id, existing.name, '{}');
        END IF;
        UPDATE trigger_events.event_triggers et
        SET relid = tbl, operations = ops, update_columns = attach.update_columns,
            payload_columns = attach.payload_columns, update_attnums = new_update_attnums,
            payload_attnums = new_payload_attnums, condition = cond, notify = attach.notify,
            updated_at = now()
        WHERE et.id = trigger_id;
    ELSE
        INSERT INTO trigger_events.event_triggers
            (name, relid, operations, update_columns, payload_columns, update_attnums, payload_attnums, condition, notify)
        VALUES (trigger_name, tbl, ops, update_columns, payload_columns, new_update_attnums, new_payload_attnums, cond, notify)
        RETURNING id INTO trigger_id;
    END IF;

    PERFORM trigger_events.install_capture(trigger_id);
    PERFORM set_config('lock_timeout', session_lock_timeout, true);
    RETURN CASE WHEN existing.id IS NULL THEN 'created' ELSE 'replaced' END;
END
$attach$;

-- detach(): as in 000001, with lock_timeout for the ACCESS EXCLUSIVE lock that dropping its
-- triggers takes. A trigger whose table is gone is removed from the registry.
DROP FUNCTION trigger_events.detach(text);
CREATE FUNCTION trigger_events.detach(trigger_name text, lock_timeout interval DEFAULT '5 seconds') RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing trigger_events.event_triggers;
    t record;
    session_lock_timeout CONSTANT text := current_setting('lock_timeout');
BEGIN
    SELECT * INTO existing FROM trigger_events.event_triggers et WHERE et.name = detach.trigger_name FOR UPDATE;
    IF existing.id IS NULL THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = existing.relid) THEN
        PERFORM trigger_events.lock_table('detach', existing.relid::regclass, 'ACCESS EXCLUSIVE', detach.lock_timeout);
        FOR t IN
            SELECT tg.tgname FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
            WHERE tg.tgrelid = existing.relid AND tg.tgparentid = 0
              AND p.pronamespace = 'trigger_events'::regnamespace
              AND p.proname IN (format('capture_%s_insert', existing.id), format('capture_%s_delete', existing.id),
                                format('capture_%s_row', existing.id))
        LOOP
            EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, existing.relid::regclass);
        END LOOP;
        PERFORM set_config('lock_timeout', session_lock_timeout, true);
    END IF;
    PERFORM trigger_events.drop_trigger_functions(existing.id, existing.name, '{}');
    DELETE FROM trigger_events.event_triggers et WHERE et.id = existing.id;
    RETURN true;
END
$$;

-- 000001's helper, replaced by install_capture and detach.
DROP FUNCTION trigger_events.drop_capture_objects(int);

-- ---------------------------------------------------------------------------------------------
-- triggers: the current names of the table and columns, the health of each trigger, the template
-- it runs and how many of its events were captured with a condition error.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW trigger_events.triggers AS
SELECT et.name,
       n.nspname AS table_schema,
       c.relname AS table_name,
       et.operations,
       CASE WHEN c.oid IS NULL THEN et.update_columns ELSE trigger_events.column_names(et.relid, et.update_attnums) END AS update_columns,
       CASE WHEN c.oid IS NULL THEN et.payload_columns ELSE trigger_events.column_names(et.relid, et.payload_attnums) END AS payload_columns,
       et.condition,
       et.notify,
       c.oid IS NOT NULL AS table_exists,
       et.created_at,
       et.updated_at,
       trigger_events.trigger_health(et.id) AS health,
       et.template_version,
       (SELECT count(*) FROM trigger_events.event_log e
        WHERE e.trigger_name = et.name AND e.condition_error IS NOT NULL) AS condition_errors
FROM trigger_events.event_triggers et
LEFT JOIN pg_class c ON c.oid = et.relid
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace;

-- Every attached trigger moves to the new template now, in this transaction.
SELECT trigger_events.install_capture(et.id) FROM trigger_events.event_triggers et
WHERE et.template_version < trigger_events.capture_template_version() ORDER BY et.id;

-- Internal helpers are the owner's; the API keeps the grants of 000001 (none for PUBLIC).
-- The view trigger_events.triggers calls capture_template_version, column_names,
-- expected_triggers and trigger_health as the role that reads it; they read only catalogs and
-- (trigger_health, as the schema owner) the registry, so every role that may use the schema keeps
-- EXECUTE on them and SELECT on the view is all a reader needs.
REVOKE ALL ON FUNCTION trigger_events.create_capture_function(text, text, regclass, "char", text, text[], text, text, text, text, int2[], boolean, text, boolean),
    trigger_events.create_condition_functions(text, regclass, "char", text),
    trigger_events.drop_trigger_functions(int, text, text[]), trigger_events.install_capture(int),
    trigger_events.lock_table(text, regclass, text, interval),
    trigger_events.attach(regclass, text, text[], text[], text[], text, boolean, interval),
    trigger_events.detach(text, interval) FROM PUBLIC;
-- Capture functions generated before this file kept PostgreSQL's default EXECUTE for PUBLIC;
-- install_capture above regenerated them without it. Any left over (a trigger whose table is
-- gone) lose it too.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
             WHERE p.pronamespace = 'trigger_events'::regnamespace AND p.proname ~ '^capture_[0-9]+_(insert|delete|row)$'
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.fn);
    END LOOP;
END
$$;
