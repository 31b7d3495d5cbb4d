-- 000021: partitioning an attached table neither loses events nor fails.
--
-- Locks: SHARE ROW EXCLUSIVE for a moment on every attached table while its capture triggers
-- are replaced and the new trigger is created (CREATE OR REPLACE TRIGGER, ALTER TABLE ...
-- DISABLE TRIGGER), as in 000004. install_capture, trigger_health and detach are replaced,
-- their owner, grants and settings kept. No new rights for writers or workers; the owner of an
-- attached partitioned table gets EXECUTE on its row capture function.
--
-- Why:
-- * PostgreSQL fires the statement-level triggers of the table a statement names only, and a
--   plain table's INSERT and DELETE are captured by statement-level triggers. attach refuses a
--   table that is already a partition or in an inheritance tree (000019), but nothing stopped
--   an attached table from becoming one afterwards: after `ALTER TABLE p ATTACH PARTITION
--   orders` (the usual first step of partitioning a table), every row inserted or deleted
--   through p was lost without a trace; after `ALTER TABLE orders INHERIT p`, every delete
--   through p. PostgreSQL refuses both for a table that has a row-level trigger with a
--   transition table, and every attached plain table now has one, te_<name>_no_parent. It
--   never runs its function (WHEN false), and is disabled where attach's caller owns the table.
--   It is on INSERT, whose rows the INSERT capture already collects in a transition table, or
--   on DELETE when only DELETE and UPDATE are captured; a table whose only captured operation
--   is UPDATE has its INSERTs' rows collected for it. A DBA who tries either change reads
--     ERROR:  trigger "te_orders_no_parent" prevents table "orders" from becoming a partition
--   and partitions the table in one transaction: detach, ATTACH PARTITION, attach of the
--   partitioned table under the same name (its capture is row-level, copied onto every
--   partition); writes to the table wait for the commit, and none goes uncaptured. A table
--   that is already a partition or a child (attached before 000019) gets no such trigger:
--   PostgreSQL would refuse it.
-- * The owner of an attached partitioned table could no longer create or attach a partition:
--   PostgreSQL copies the row trigger onto the new partition as that role, which then needs
--   EXECUTE on the capture function, and only the function's owner had it ("permission denied
--   for function", with no name). A monthly partition job failed, and then every write for the
--   month. The owners of the table and of its partitioned partitions now hold EXECUTE on that
--   function (a former owner's grant is revoked). The function still raises and records nothing
--   when any other trigger fires it (000004); the owner could already change the table at will.
--   A trigger whose table changed owner since is missing that grant (health `missing`) until
--   attach, called again, gives it.
--
-- Not covered: `CREATE TABLE c (...) INHERITS (orders)` gives the attached table a child, and
-- PostgreSQL offers nothing short of an event trigger (a superuser's) to refuse that
-- (sql/README.md, "Schema changes on attached tables").

-- The function of every no-parent trigger. It never runs (the triggers say WHEN false), and
-- does nothing if it did. PUBLIC keeps EXECUTE, since the role that calls attach creates the
-- trigger and must be able to name it; only roles with USAGE on the schema can.
CREATE FUNCTION trigger_events.capture_no_parent() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NULL;
END
$$;
GRANT EXECUTE ON FUNCTION trigger_events.capture_no_parent() TO PUBLIC;
COMMENT ON FUNCTION trigger_events.capture_no_parent() IS
    'Of the te_<name>_no_parent triggers, which keep an attached plain table from becoming a partition or an inheritance child. Never runs.';

CREATE OR REPLACE FUNCTION trigger_events.capture_template_version() RETURNS int
LANGUAGE sql IMMUTABLE
RETURN 7;

-- ---------------------------------------------------------------------------------------------
-- install_capture(): as in 000017, and the no-parent trigger.
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

-- ---------------------------------------------------------------------------------------------
-- trigger_health(): as in 000004, and a plain table without its no-parent trigger, or a
-- partitioned table whose owner cannot execute its capture function, is missing what attach made.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.trigger_health(trigger_id int) RETURNS text
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
        -- The no-parent trigger, on a plain table that has no parent, and the owner's EXECUTE
        -- on a partitioned table's row capture function (install_capture).
        WHEN c.relkind = 'r' AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
             AND NOT EXISTS (
                 SELECT 1 FROM pg_trigger tg
                 JOIN pg_proc p ON p.oid = tg.tgfoid
                 WHERE tg.tgrelid = c.oid AND tg.tgname = 'te_' || et.name || '_no_parent' AND tg.tgparentid = 0
                   AND p.pronamespace = 'trigger_events'::regnamespace AND p.proname = 'capture_no_parent')
            THEN 'missing'
        WHEN c.relkind = 'p' AND EXISTS (
                 SELECT 1 FROM pg_partition_tree(c.oid) pt JOIN pg_class x ON x.oid = pt.relid
                 WHERE x.relkind = 'p' AND NOT has_function_privilege(
                     x.relowner, to_regprocedure(format('trigger_events.capture_%s_row()', et.id)), 'EXECUTE'))
            THEN 'missing'
        ELSE 'ok'
    END
    FROM trigger_events.event_triggers et
    LEFT JOIN pg_class c ON c.oid = et.relid
    WHERE et.id = trigger_id
$$;

-- ---------------------------------------------------------------------------------------------
-- detach(): as in 000004, and the no-parent trigger goes with the rest.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.detach(trigger_name text, lock_timeout interval DEFAULT '5 seconds') RETURNS boolean
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
              AND (p.proname IN (format('capture_%s_insert', existing.id), format('capture_%s_delete', existing.id),
                                 format('capture_%s_row', existing.id))
                   OR (tg.tgname = 'te_' || existing.name || '_no_parent' AND p.proname = 'capture_no_parent'))
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

-- Every attached trigger moves to the new template now, in this transaction.
SELECT trigger_events.install_capture(et.id) FROM trigger_events.event_triggers et
WHERE et.template_version < trigger_events.capture_template_version() ORDER BY et.id;
