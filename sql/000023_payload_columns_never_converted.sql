-- 000023: a column left out of payload_columns is never converted to JSON by capture.
--
-- Locks: SHARE ROW EXCLUSIVE for a moment on every attached table while its capture triggers
-- are replaced (CREATE OR REPLACE TRIGGER), as in 000004; migrate waits for it at most its lock
-- timeout a try. create_capture_function and install_capture are replaced, their owner, grants
-- and settings kept. No new rights.
--
-- Why: capture took the row image as to_jsonb of the whole row, less the columns that are not
-- payload columns. A row with a value jsonb cannot hold (a string over 256 MiB: a text of that
-- size, a bytea of half of it, which JSON writes in hex) failed the application's write with
--   ERROR:  string too long to represent as jsonb string
-- even when that column was left out of payload_columns, the very option a DBA reaches for to
-- keep large documents out of events. Capture now fills those columns with NULL first
-- (jsonb_populate_record over the row, with an object of nulls read from the catalog in the
-- query that read their names) and converts the rest: the large value is never read. A column
-- of a domain type is left as it was, since a domain may refuse NULL; it is converted, then
-- removed, as before. Events are the same as before, byte for byte. Reading which columns to
-- empty, and of what type, costs single-row writers about 14 % (bench/README.md), so it is
-- done only where a column that is not payload is of a variable-length type: a timestamp or a
-- number cannot be too large.
--
-- And a trigger set to fire ALWAYS or on REPLICA (for logical replication) stopped every upgrade
-- that regenerates capture, and every attach, by a schema owner that has only TRIGGER on the
-- table: replacing the trigger resets its mode, and only the table's owner may set it again
-- ("must be owner of table"). install_capture now leaves such a trigger in place where it
-- already runs the same function on the same rows; otherwise it says what the owner must do.
--
-- Not covered, and said so in sql/README.md: a row whose payload itself is over the limit (the
-- write fails, so no change goes uncaptured), a partitioned table's condition (its helper takes
-- the whole row as JSON), and backfill, which converts whole rows.

CREATE OR REPLACE FUNCTION trigger_events.capture_template_version() RETURNS int
LANGUAGE sql IMMUTABLE
RETURN 8;

-- ---------------------------------------------------------------------------------------------
-- blanks_hidden_columns(): whether capture empties the columns that are not payload columns
-- before it converts the row: when one of them is of a variable-length type (text, bytea, json,
-- arrays...), the only kind that can hold a value too large for jsonb. Otherwise capture is as
-- before, without the dearer catalog query (bench/README.md). Read when the capture is
-- generated: a variable-length column added later is emptied once attach is called again, or
-- a migration regenerates the trigger.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.blanks_hidden_columns(tbl regclass, payload_attnums int2[]) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN payload_attnums IS NOT NULL AND EXISTS (
    SELECT FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnum = ANY (payload_attnums)
      AND a.attlen = -1);
REVOKE ALL ON FUNCTION trigger_events.blanks_hidden_columns(regclass, int2[]) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- create_capture_function(): as in 000015, and the emptied columns (_te_blank).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.create_capture_function(
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
    IF trigger_events.blanks_hidden_columns(tbl, payload_attnums) THEN
        declarations := declarations || E'\n    _te_hidden text[];\n    _te_blank jsonb;';
    ELSIF payload_attnums IS NOT NULL THEN
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
    IF trigger_events.blanks_hidden_columns(tbl, payload_attnums) THEN
        -- The columns that are not payload columns (added ones included), by their names of now,
        -- and the same as an object of JSON nulls, less those of a domain type (which may refuse
        -- a NULL): the row image is taken of the row with those emptied, then without them, so
        -- that a value too large for jsonb in a column that is not payload is never converted.
        -- One catalog query per call, as the names alone are otherwise, but a dearer one
        -- (bench/README.md, "Payload columns never converted").
        guard := guard || format($h$
    SELECT coalesce(pg_catalog.array_agg(a.attname::text), '{}'),
           coalesce(pg_catalog.jsonb_object_agg(a.attname, 'null'::jsonb) FILTER (WHERE t.typtype <> 'd'), '{}')
    INTO _te_hidden, _te_blank
    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnum = ANY (%L::int2[]);$h$,
            tbl::oid, payload_attnums);
    END IF;

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
        -- idle; wake_worker() then lets one writer send it. The hint is read first, in an IF of
        -- its own: a function call on a constant, which plpgsql evaluates without starting a
        -- query, where the flag is a query (and an IF that reads both, one query for both).
        -- While every worker is busy (the hint 0) that is all a capture pays.
        body := body || format($n$
    IF FOUND AND pg_catalog.pg_sequence_last_value(%s::oid::regclass) = 1 THEN
        IF (SELECT idle FROM trigger_events.worker_signal) THEN
            PERFORM trigger_events.wake_worker();
        END IF;
    END IF;$n$, 'trigger_events.worker_idle_hint'::regclass::oid);
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

-- ---------------------------------------------------------------------------------------------
-- install_capture(): as in 000021, with the row images of the emptied row, and a trigger that
-- fires ALWAYS or on REPLICA left in place where the caller could not set that mode again.
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
    no_parent text;
    no_parent_op text;
    row_function regprocedure;
    owners oid[];
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

    -- Row images: to_jsonb of the row, less the columns that are not payload columns, which are
    -- emptied first (create_capture_function's _te_blank) where one of them can hold a large
    -- value, so that their values are never converted. The row is "new".* (in a row trigger, plpgsql's NEW.*): a bare "new" in a
    -- statement over the transition table means a column of that name first, where the table
    -- has one.
    payload_new := CASE WHEN trigger_events.blanks_hidden_columns(tbl, et.payload_attnums)
                             THEN 'to_jsonb(pg_catalog.jsonb_populate_record("new".*, _te_blank)) - _te_hidden'
                        WHEN et.payload_attnums IS NOT NULL THEN 'to_jsonb("new".*) - _te_hidden'
                        ELSE 'to_jsonb("new".*)' END;
    payload_old := CASE WHEN trigger_events.blanks_hidden_columns(tbl, et.payload_attnums)
                             THEN 'to_jsonb(pg_catalog.jsonb_populate_record("old".*, _te_blank)) - _te_hidden'
                        WHEN et.payload_attnums IS NOT NULL THEN 'to_jsonb("old".*) - _te_hidden'
                        ELSE 'to_jsonb("old".*)' END;

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
        -- Replacing a trigger set to fire ALWAYS or on REPLICA resets it to ENABLE, and only the
        -- table's owner may set it back. A caller with only TRIGGER on the table (a schema owner
        -- on a managed database) leaves such a trigger as it is where it already is the trigger
        -- this would make: the same function, timing, level and transition table, and a WHEN
        -- clause that reads the same columns (by number). The function was replaced in place
        -- above, which is all a new template changes.
        IF mode IN ('A', 'R') AND NOT pg_has_role((SELECT c.relowner FROM pg_class c WHERE c.oid = et.relid), 'USAGE') THEN
            IF EXISTS (
                SELECT FROM pg_trigger tg
                WHERE tg.tgrelid = et.relid AND tg.tgname = t.tgname
                  AND tg.tgfoid = format('trigger_events.%I()', t.function_name)::regprocedure
                  -- AFTER, and row- or statement-level with the transition table as made below.
                  AND (tg.tgtype::int & 2) = 0
                  AND ((tg.tgtype::int & 1) = 1) = NOT (relkind = 'r' AND t.op IN ('INSERT', 'DELETE'))
                  AND tg.tgnewtable IS NOT DISTINCT FROM CASE WHEN relkind = 'r' AND t.op = 'INSERT' THEN 'te_new' END
                  AND tg.tgoldtable IS NOT DISTINCT FROM CASE WHEN relkind = 'r' AND t.op = 'DELETE' THEN 'te_old' END
                  AND (t.op <> 'UPDATE'
                       OR ARRAY(SELECT DISTINCT m[1]::int2 FROM regexp_matches(tg.tgqual::text, ':varattno (\d+)', 'g') AS m ORDER BY 1)
                          = CASE WHEN et.update_attnums IS NULL THEN '{0}'::int2[]
                                 ELSE ARRAY(SELECT DISTINCT u FROM unnest(et.update_attnums) AS u ORDER BY 1) END))
            THEN
                CONTINUE;
            END IF;
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = format('trigger_events: trigger %I on %s fires %s; it must be replaced, which sets it back to ENABLE, and only the table''s owner may set it to %s again',
                                 t.tgname, tbl, CASE mode WHEN 'A' THEN 'ALWAYS' ELSE 'on REPLICA only' END, CASE mode WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END),
                HINT = format('As the owner of %1$s: ALTER TABLE %1$s ENABLE TRIGGER %2$I; then run this again; then ALTER TABLE %1$s ENABLE %3$s TRIGGER %2$I.',
                              tbl, t.tgname, CASE mode WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END);
        END IF;
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

    -- The no-parent trigger (see the migration's head) of a plain table that has no parent: a
    -- row-level trigger with a transition table, which PostgreSQL will not let a partition or an
    -- inheritance child have, on an operation whose transition table capture fills anyway. It
    -- never runs its function (WHEN false); disabled too where the caller owns the table (only
    -- an owner may disable a trigger), so that not even the WHEN clause is read.
    IF relkind = 'r' AND NOT EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = et.relid) THEN
        no_parent := 'te_' || et.name || '_no_parent';
        no_parent_op := CASE WHEN 'INSERT' = ANY (et.operations) OR NOT 'DELETE' = ANY (et.operations) THEN 'INSERT' ELSE 'DELETE' END;
        EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER %s ON %s REFERENCING %s TABLE AS te_no_parent FOR EACH ROW WHEN (false) '
                       'EXECUTE FUNCTION trigger_events.capture_no_parent()',
            no_parent, no_parent_op, tbl, CASE no_parent_op WHEN 'INSERT' THEN 'NEW' ELSE 'OLD' END);
        IF pg_has_role((SELECT c.relowner FROM pg_class c WHERE c.oid = et.relid), 'USAGE') THEN
          BEGIN
            EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', tbl, no_parent);
            EXECUTE format('COMMENT ON TRIGGER %I ON %s IS %L', no_parent, tbl, format(
                'TriggerEvents: keeps this table from becoming a partition or an inheritance child, since event trigger %s '
                'would not capture rows written through the parent. To partition the table, in one transaction: '
                'trigger_events.detach(%L), ATTACH PARTITION, trigger_events.attach(<the partitioned table>, %L). Never fires.',
                et.name, et.name, et.name));
          EXCEPTION WHEN object_in_use THEN
            -- ALTER TABLE refuses a table with trigger events pending in this transaction (a
            -- deferred constraint after the caller's writes): left enabled, it refuses all the same.
            NULL;
          END;
        END IF;
    END IF;

    -- Whoever creates or attaches a partition of a partitioned table makes PostgreSQL copy its
    -- row trigger onto the partition, which takes EXECUTE on the trigger's function: the owners
    -- of the table and of its partitioned partitions (and their members) may (see the
    -- migration's head). A former owner's grant goes, so that the role can be dropped.
    IF relkind = 'p' THEN
        row_function := format('trigger_events.%I()', format('capture_%s_row', et.id))::regprocedure;
        owners := ARRAY(SELECT DISTINCT c.relowner FROM pg_partition_tree(et.relid) pt JOIN pg_class c ON c.oid = pt.relid
                        WHERE c.relkind = 'p');
        FOR t IN
            SELECT a.grantee::regrole AS role
            FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
            WHERE p.oid = row_function AND a.privilege_type = 'EXECUTE'
              AND a.grantee NOT IN (0, p.proowner) AND a.grantee <> ALL (owners)
        LOOP
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %s', row_function, t.role);
        END LOOP;
        FOR t IN SELECT o::regrole AS role FROM unnest(owners) AS o LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', row_function, t.role);
        END LOOP;
    END IF;

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

REVOKE ALL ON FUNCTION trigger_events.create_capture_function(text, text, regclass, "char", text, text[], text, text, text, text, int2[], boolean, text, boolean)
    FROM PUBLIC;

-- Every attached trigger moves to the new template now, in this transaction.
SELECT trigger_events.install_capture(et.id) FROM trigger_events.event_triggers et
WHERE et.template_version < trigger_events.capture_template_version() ORDER BY et.id;
