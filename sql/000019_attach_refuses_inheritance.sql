-- 000019: attach refuses a table whose changes its triggers would not all see: a partition of a
-- partitioned table, and a table in an inheritance tree.
--
-- Locks: none on tables (attach replaced, its owner, grants and settings kept). No new rights.
--
-- Why: capture of a plain table takes INSERT and DELETE with statement-level triggers, and
-- PostgreSQL fires the statement-level triggers of the table a statement names, not those of
-- the partitions or inheritance children it reaches, nor those of a parent. Attached, a
-- partition missed every row inserted or deleted through its partitioned table; an inheritance
-- parent missed the UPDATE of its children's rows through it (their row triggers fire, not its
-- own) and every write that names a child; a child missed the DELETE of its rows through its
-- parent. Each was recorded nowhere, and the README's guarantee of one event per committed
-- change did not hold. A partitioned table is attached as before (row-level triggers, cloned
-- onto every partition, present and future), a sub-partitioned one too; the refusal of a
-- partition names its parent. Such a table attached before this migration keeps its triggers
-- (this migration drops nothing); attach refuses it too, saying why, and detach removes it.

CREATE OR REPLACE FUNCTION trigger_events.attach(
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
    -- A statement fires the statement-level triggers of the table it names only (see the head).
    -- A partitioned table's capture is row-level, cloned onto its partitions, and fires however
    -- a row is reached, so one that is itself a partition is left alone.
    SELECT i.inhparent::regclass::text INTO bad
    FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
    WHERE i.inhrelid = tbl AND p.relkind = 'p' AND rel.relkind = 'r';
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'trigger_events.attach: % is a partition of %: rows inserted or deleted through % would not be captured; attach % instead',
            tbl, bad, bad, bad;
    END IF;
    SELECT string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhseqno) INTO bad FROM pg_inherits i WHERE i.inhrelid = tbl AND rel.relkind = 'r';
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'trigger_events.attach: % inherits from %: a DELETE through its parent would not be captured; tables in an inheritance tree cannot be attached (a partitioned table can)',
            tbl, bad;
    END IF;
    IF rel.relkind = 'r' THEN
        SELECT string_agg(i.inhrelid::regclass::text, ', ' ORDER BY i.inhrelid::regclass::text) INTO bad FROM pg_inherits i WHERE i.inhparent = tbl;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'trigger_events.attach: % has inheritance children (%): changes to their rows, through it or not, would not all be captured; tables in an inheritance tree cannot be attached (a partitioned table can)',
                tbl, bad;
        END IF;
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

