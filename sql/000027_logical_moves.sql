-- 000027: a database moved by a logical dump or by logical replication keeps capturing, and
-- migrate puts the rest right.
--
-- Locks: ACCESS EXCLUSIVE for a moment on trigger_events.event_triggers (its relid becomes a
-- regclass: the table is rewritten, a few rows) and SHARE ROW EXCLUSIVE on every attached table
-- while its capture triggers are replaced, as in 000023. The view trigger_events.triggers is made
-- again with its grants. The worker's role gets EXECUTE on moved_reason().
--
-- Why: pg_dump and pg_restore (or psql), and logical replication into a new server (a major
-- upgrade or a move without pg_upgrade), give every table another OID, renumber the columns of
-- a table that had dropped ones, and, on another server, start transaction ids over. The
-- generated capture functions named their table, and the sequence of the idle hint, by OID: on
-- the copy every write to an attached table failed ("runs only from the triggers attach made"),
-- the applications' writes with it. The registry named the table by OID too, so neither attach
-- nor migrate could put it right. And each subscription's place in the log is a snapshot of the
-- old server's transaction ids: on another server the fan-out found nothing new for as long as
-- the new ids stayed below the old ones, and retention, to which events of those new ids looked
-- passed, would delete them, undelivered, once they were older than its bound.
--
-- Now the registry names the table by regclass, which a dump writes by name. Capture checks the
-- table's OID as before, and where it is not the one written in the function asks the registry
-- (and leaves out the columns that are not payload by name, since their numbers may have
-- changed). trigger_events.installation keeps the OID of event_log and the server's system
-- identifier from where the schema was installed or last repaired; moved_reason() says why the
-- state is not this database's own (event_log has another OID, or the log's transaction ids are
-- ahead of this server's), and the system identifier tells the repair whether the server is
-- another one. While moved_reason() says something, retention refuses to delete and a worker
-- refuses to start, and migrate (repair_after_move()) renumbers the registry's columns by name,
-- regenerates every capture onto the tables that carry its triggers, and, when the server is
-- another one, gives each subscription a delivery of every
-- event its place had not passed and of every event committed since the move, takes its place
-- anew, and marks the old events as committed long ago (transaction id 2, frozen), so that the
-- new server's ids can never be taken for theirs.

-- ---------------------------------------------------------------------------------------------
-- The registry names its table by regclass. The view that reads it is made again, with its grants.
-- ---------------------------------------------------------------------------------------------
-- In one block, so that the view's grants are carried over without a temporary table (a
-- schema owner may lack TEMPORARY on the database).
DO $view$
DECLARE
    grants CONSTANT text[] := ARRAY(
        SELECT format('GRANT %s ON trigger_events.triggers TO %s', a.privilege_type, a.grantee::regrole)
        FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
        WHERE c.oid = 'trigger_events.triggers'::regclass AND a.grantee <> 0 AND a.grantee <> c.relowner);
    g text;
BEGIN
    DROP VIEW trigger_events.triggers;
    ALTER TABLE trigger_events.event_triggers ALTER COLUMN relid TYPE regclass USING relid::regclass;

    -- 000004's view.
    CREATE VIEW trigger_events.triggers AS
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
    REVOKE ALL ON trigger_events.triggers FROM PUBLIC;
    FOREACH g IN ARRAY grants LOOP
        EXECUTE g;
    END LOOP;

    -- A session keeps each plpgsql function compiled, with the registry's row type as it was:
    -- called again (install_capture, below, in migrate's own session) it would pass relid as
    -- an oid where its plans now take a regclass. Rewriting a function's catalog row, here its
    -- cost as it is, has every session compile it anew.
    FOR g IN
        SELECT format('ALTER FUNCTION %s COST %s', p.oid::regprocedure, p.procost)
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = 'trigger_events'::regnamespace AND l.lanname = 'plpgsql' AND p.prosrc LIKE '%event_triggers%'
    LOOP
        EXECUTE g;
    END LOOP;
END
$view$;

-- The column names the registry keeps are those attach was given; a column renamed since has
-- its name of now here, which is what a repair after a move goes by.
UPDATE trigger_events.event_triggers et
SET update_columns = coalesce(trigger_events.column_names(et.relid, et.update_attnums), et.update_columns),
    payload_columns = coalesce(trigger_events.column_names(et.relid, et.payload_attnums), et.payload_columns)
WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = et.relid);

-- ---------------------------------------------------------------------------------------------
-- Where the schema's state was made: event_log's OID and the server's system identifier.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE trigger_events.installation (
    singleton         boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    event_log_oid     oid         NOT NULL,
    system_identifier bigint      NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trigger_events.installation IS
    'Where the schema''s state was made (event_log''s OID, the server''s system identifier); a logical copy elsewhere differs, and migrate repairs it.';
REVOKE ALL ON trigger_events.installation FROM PUBLIC;
INSERT INTO trigger_events.installation (event_log_oid, system_identifier)
SELECT 'trigger_events.event_log'::regclass::oid, s.system_identifier FROM pg_control_system() s;

-- ---------------------------------------------------------------------------------------------
-- captures_its_table(): whether the table the registry names for an event trigger carries a
-- PostgreSQL trigger that runs one of its capture functions, which are named by its id. A dump
-- of a schema before this one wrote the registry's OIDs as numbers, which on a copy may name
-- another table: capture is never regenerated onto a table this does not confirm.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.captures_its_table(trigger_id int) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT EXISTS (
    SELECT FROM trigger_events.event_triggers et
    JOIN pg_trigger tg ON tg.tgrelid = et.relid AND tg.tgparentid = 0
    JOIN pg_proc p ON p.oid = tg.tgfoid AND p.pronamespace = 'trigger_events'::regnamespace
    WHERE et.id = trigger_id AND p.proname IN (format('capture_%s_insert', et.id), format('capture_%s_delete', et.id), format('capture_%s_row', et.id)))
$$;
REVOKE ALL ON FUNCTION trigger_events.captures_its_table(int) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- moved_reason(): NULL while the schema's state is this database's own; otherwise what shows that
-- it was copied here from elsewhere. pg_upgrade keeps OIDs and transaction ids (a new system
-- identifier alone is no move); a physical copy keeps everything.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.moved_reason() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE
    WHEN i.event_log_oid IS DISTINCT FROM 'trigger_events.event_log'::regclass::oid
        THEN 'its tables have other OIDs than where the schema was installed (a logical dump restored here, or a copy by logical replication)'
    -- A place or an event ahead of every transaction id this server has given: impossible
    -- on the server that made them.
    WHEN EXISTS (SELECT FROM trigger_events.subscription_positions p
                 WHERE pg_snapshot_xmax(p.position) > pg_snapshot_xmax(pg_current_snapshot()))
      -- (The caller's own events excepted: its id may be past the snapshot's xmax.)
      OR (SELECT max(e.transaction_id) FROM trigger_events.event_log e
          WHERE e.transaction_id IS DISTINCT FROM pg_current_xact_id_if_assigned()) >= pg_snapshot_xmax(pg_current_snapshot())
        THEN 'the log''s transaction ids are ahead of this server''s (its data was copied from another server)'
    END
FROM (SELECT NULL) one LEFT JOIN trigger_events.installation i ON true;
$$;
REVOKE ALL ON FUNCTION trigger_events.moved_reason() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- delete_delivered_events(): as in 000005, refused while the state is another database's: the
-- places would let events of the new server's transactions go undelivered.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.delete_delivered_events(event_ids bigint[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    moved CONSTANT text := trigger_events.moved_reason();
    deleted bigint;
BEGIN
    IF moved IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'trigger_events: retention deletes nothing from a database moved here: ' || moved,
            HINT = 'Run triggerevents migrate, which repairs it.';
    END IF;
    WITH gone AS (
        DELETE FROM trigger_events.event_log e
        WHERE e.id = ANY (event_ids)
          AND NOT EXISTS (
              SELECT 1 FROM trigger_events.subscriptions s
              JOIN trigger_events.deliveries d ON d.subscription_id = s.id AND d.event_id = e.id
              WHERE d.status <> 'delivered')
          AND NOT EXISTS (
              SELECT 1 FROM trigger_events.subscription_positions sp
              WHERE NOT pg_visible_in_snapshot(e.transaction_id, sp.position))
        RETURNING 1
    )
    SELECT count(*) INTO deleted FROM gone;
    RETURN deleted;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- create_capture_function(): as in 000023, with the table's OID in a variable, asked of the
-- registry where the trigger fires on a table of another OID, and the idle hint's sequence by
-- name. On its own table, capture does what it did.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.capture_template_version() RETURNS int
LANGUAGE sql IMMUTABLE
RETURN 9;

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
    _te_condition_error text;
    -- Set only where the table's OID is not the one written below (a logical dump restored
    -- elsewhere, or a copy by logical replication): the registry, which names the table
    -- (regclass), says which it is, and the columns that are not payload go by name.
    _te_relid oid;
    _te_moved boolean;
    _te_payload_names text[];$d$;
    IF trigger_events.blanks_hidden_columns(tbl, payload_attnums) THEN
        declarations := declarations || E'\n    _te_hidden text[];\n    _te_blank jsonb;';
    ELSIF payload_attnums IS NOT NULL THEN
        declarations := declarations || E'\n    _te_hidden text[];';
    END IF;

    -- Who fired it: the triggers attach made on this table, and no other. Where the table's OID is
    -- not the one written here (a logical restore: see the declarations), the registry decides,
    -- and this call goes on as the moved table's (the next migrate writes the new OID here).
    IF relkind = 'p' THEN
        -- Row triggers fire on the partitions: the event names the attached parent.
        guard := format($g$
    SELECT n.nspname, c.relname INTO _te_schema, _te_table
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = %3$s AND TG_NAME = ANY (%1$L::text[])
      AND %3$s::oid IN (SELECT p.relid::oid FROM pg_catalog.pg_partition_ancestors(TG_RELID) AS p);
    IF NOT FOUND THEN
        SELECT et.relid, et.payload_columns INTO _te_relid, _te_payload_names
        FROM trigger_events.event_triggers et WHERE et.name = %2$L;
        _te_moved := true;
        SELECT n.nspname, c.relname INTO _te_schema, _te_table
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = _te_relid AND TG_NAME = ANY (%1$L::text[])
          AND _te_relid IN (SELECT p.relid::oid FROM pg_catalog.pg_partition_ancestors(TG_RELID) AS p);
    END IF;
    IF NOT FOUND THEN$g$, tgnames, trigger_name, tbl::oid);
    ELSE
        -- One comparison of constants, as in 000023, on the table's own capture.
        guard := format($g$
    IF TG_RELID <> %3$s OR NOT TG_NAME = ANY (%1$L::text[]) THEN
        IF TG_NAME = ANY (%1$L::text[]) THEN
            SELECT et.relid, et.payload_columns INTO _te_relid, _te_payload_names
            FROM trigger_events.event_triggers et WHERE et.name = %2$L;
            _te_moved := TG_RELID = _te_relid;
        END IF;
        IF NOT coalesce(_te_moved, false) THEN$g$, tgnames, trigger_name, tbl::oid);
    END IF;
    guard := guard || format($g$
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege', MESSAGE = pg_catalog.format(
            'trigger_events: the capture of event trigger %%s runs only from the triggers attach made; fired by %%s on %%s, it recorded nothing',
            %L, TG_NAME, TG_RELID::regclass);
    END IF;$g$, trigger_name);
    IF relkind <> 'p' THEN
        guard := guard || E'\n    END IF;';
    END IF;
    -- The columns that are not payload columns (added ones included), by their names of now;
    -- on a moved table by the names the registry has, since a restore numbers the columns
    -- again (dropped ones are gone): a column renamed since attach is then left out too. Two
    -- queries, so that the usual one keeps the table's OID and numbers as constants, as before:
    -- with parameters the plan cache's generic plan of the dearer one ran at a third of its speed.
    IF trigger_events.blanks_hidden_columns(tbl, payload_attnums) THEN
        -- And the same as an object of JSON nulls, less those of a domain type (which may refuse
        -- a NULL): the row image is taken of the row with those emptied, then without them, so
        -- that a value too large for jsonb in a column that is not payload is never converted.
        -- One catalog query per call, as the names alone are otherwise, but a dearer one
        -- (bench/README.md, "Payload columns never converted").
        guard := guard || format($h$
    IF _te_moved THEN
        SELECT coalesce(pg_catalog.array_agg(a.attname::text), '{}'),
               coalesce(pg_catalog.jsonb_object_agg(a.attname, 'null'::jsonb) FILTER (WHERE t.typtype <> 'd'), '{}')
        INTO _te_hidden, _te_blank
        FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = _te_relid AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname::text = ANY (_te_payload_names);
    ELSE
        SELECT coalesce(pg_catalog.array_agg(a.attname::text), '{}'),
               coalesce(pg_catalog.jsonb_object_agg(a.attname, 'null'::jsonb) FILTER (WHERE t.typtype <> 'd'), '{}')
        INTO _te_hidden, _te_blank
        FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnum = ANY (%L::int2[]);
    END IF;$h$,
            tbl::oid, payload_attnums);
    ELSIF payload_attnums IS NOT NULL THEN
        guard := guard || format($h$
    IF _te_moved THEN
        _te_hidden := ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = _te_relid AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname::text = ANY (_te_payload_names));
    ELSE
        _te_hidden := ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnum = ANY (%L::int2[]));
    END IF;$h$,
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
    IF FOUND AND pg_catalog.pg_sequence_last_value('trigger_events.worker_idle_hint'::regclass) = 1 THEN
        IF (SELECT idle FROM trigger_events.worker_signal) THEN
            PERFORM trigger_events.wake_worker();
        END IF;
    END IF;$n$);
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

REVOKE ALL ON FUNCTION trigger_events.create_capture_function(text, text, regclass, "char", text, text[], text, text, text, text, int2[], boolean, text, boolean)
    FROM PUBLIC;

-- Every attached trigger moves to the new template now, in this transaction: those whose table
-- the registry names for sure (see captures_its_table()).
SELECT trigger_events.install_capture(et.id) FROM trigger_events.event_triggers et
WHERE et.template_version < trigger_events.capture_template_version() AND trigger_events.captures_its_table(et.id)
ORDER BY et.id;


-- ---------------------------------------------------------------------------------------------
-- repair_after_move(): what migrate runs after its migrations. Nothing while moved_reason() says
-- nothing; otherwise, in the caller's transaction, and returns what it did.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.repair_after_move() RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $repair$
DECLARE
    reason CONSTANT text := trigger_events.moved_reason();
    here CONSTANT bigint := (SELECT s.system_identifier FROM pg_control_system() s);
    other_server boolean;
    et record;
    attnums int2[];
    missing bigint;
    unsure text[] := '{}';
    by_place boolean := false;
    update_now int2[];
    payload_now int2[];
    renumbered int := 0;
    regenerated int := 0;
    now_snapshot pg_snapshot;
    old_last bigint;
    made bigint := 0;
    count_made bigint;
    frozen bigint := 0;
    p record;
BEGIN
    IF reason IS NULL THEN
        -- The same state on a server with another identifier (pg_upgrade): noted, nothing to do.
        UPDATE trigger_events.installation SET system_identifier = here, recorded_at = now()
        WHERE system_identifier <> here;
        RETURN NULL;
    END IF;

    -- Retention stays out while deliveries of events already in the log are made (the gate
    -- replay and registration take), and fan-outs wait for the places.
    PERFORM pg_advisory_xact_lock_shared(32776894331183976);
    PERFORM FROM trigger_events.subscription_positions FOR UPDATE;

    -- Column numbers: a restore numbers a table's columns again (dropped ones are gone). The
    -- names the registry keeps decide, in column order as attach keeps them; one that is not
    -- there any more stops the repair. Only for tables the registry names for sure.
    FOR et IN
        SELECT e.* FROM trigger_events.event_triggers e WHERE trigger_events.captures_its_table(e.id) ORDER BY e.id
    LOOP
        update_now := et.update_attnums;
        payload_now := et.payload_attnums;
        IF et.update_columns IS NOT NULL THEN
            SELECT count(*) FILTER (WHERE a.attnum IS NULL), array_agg(a.attnum ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL)
            INTO missing, attnums
            FROM (SELECT DISTINCT c FROM unnest(et.update_columns) AS c) u
            LEFT JOIN pg_attribute a ON a.attrelid = et.relid AND a.attname = u.c AND a.attnum > 0 AND NOT a.attisdropped;
            IF missing > 0 THEN
                RAISE EXCEPTION 'trigger_events: event trigger % listens to update_columns % of %, and % has no column of one of those names now',
                    et.name, et.update_columns, et.relid, et.relid
                    USING HINT = 'Attach it again with the columns it should listen to (trigger_events.attach), then run migrate again.';
            END IF;
            update_now := coalesce(attnums, '{}');
        END IF;
        IF et.payload_columns IS NOT NULL THEN
            SELECT count(*) FILTER (WHERE a.attnum IS NULL), array_agg(a.attnum ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL)
            INTO missing, attnums
            FROM (SELECT DISTINCT c FROM unnest(et.payload_columns) AS c) u
            LEFT JOIN pg_attribute a ON a.attrelid = et.relid AND a.attname = u.c AND a.attnum > 0 AND NOT a.attisdropped;
            IF missing > 0 THEN
                RAISE EXCEPTION 'trigger_events: event trigger % sends payload_columns % of %, and % has no column of one of those names now',
                    et.name, et.payload_columns, et.relid, et.relid
                    USING HINT = 'Attach it again with the columns it should send (trigger_events.attach), then run migrate again.';
            END IF;
            -- None left is none sent, not every column.
            payload_now := coalesce(attnums, '{}');
        END IF;
        IF update_now IS DISTINCT FROM et.update_attnums OR payload_now IS DISTINCT FROM et.payload_attnums THEN
            UPDATE trigger_events.event_triggers e SET update_attnums = update_now, payload_attnums = payload_now, updated_at = now()
            WHERE e.id = et.id;
            renumbered := renumbered + 1;
        END IF;
    END LOOP;

    -- Every capture again, with the tables' OIDs of here; an event trigger whose table the
    -- registry does not name for sure is left, and said, for attach to put right.
    FOR et IN SELECT e.id, e.name, trigger_events.captures_its_table(e.id) AS sure FROM trigger_events.event_triggers e ORDER BY e.id LOOP
        IF et.sure THEN
            PERFORM trigger_events.install_capture(et.id);
            regenerated := regenerated + 1;
        ELSE
            unsure := unsure || et.name;
        END IF;
    END LOOP;

    -- Another server: its transaction ids mean nothing here. The events of before the move are
    -- those up to the last with an id of the old server above every id this one has given (or,
    -- when there is none, up to the last that has a delivery); the later ones are this server's.
    other_server := reason LIKE 'the log''s transaction ids%'
                    OR here IS DISTINCT FROM (SELECT i.system_identifier FROM trigger_events.installation i);
    IF other_server THEN
        -- The snapshot and the boundary in one statement: an event committed between two would
        -- move the boundary past this server's events.
        SELECT x.s, (SELECT max(e.id) FROM trigger_events.event_log e WHERE e.transaction_id >= pg_snapshot_xmax(x.s))
        INTO now_snapshot, old_last
        FROM pg_current_snapshot() AS x(s);
        IF old_last IS NULL AND NOT EXISTS (
            SELECT FROM trigger_events.subscription_positions sp WHERE pg_snapshot_xmax(sp.position) > pg_snapshot_xmax(now_snapshot)) THEN
            -- This server's ids are past the old places: each place tells old from new itself.
            by_place := true;
        ELSE
            old_last := coalesce(old_last, (SELECT max(d.event_id) FROM trigger_events.deliveries d), 0);
        END IF;
        -- Sequences are not copied by logical replication: the keys' numbers go on after the
        -- highest in use, so that what is made below comes after what each key has.
        PERFORM setval('trigger_events.delivery_order', greatest(
            (SELECT last_value FROM trigger_events.delivery_order), (SELECT max(d.order_seq) FROM trigger_events.deliveries d)));
        FOR p IN
            SELECT s.id, s.name, s.trigger_name, s.operations, sp.position
            FROM trigger_events.subscription_positions sp JOIN trigger_events.subscriptions s ON s.id = sp.subscription_id
            ORDER BY s.id
        LOOP
            -- What the place had not passed, of before the move, and what this server committed
            -- since; ordered subscriptions number them after everything their keys have, in log
            -- order, as replay does. A delivery made already is left as it is.
            INSERT INTO trigger_events.deliveries (subscription_id, event_id, order_key, order_seq)
            SELECT p.id, k.id, k.key, CASE WHEN k.key IS NOT NULL THEN nextval('trigger_events.delivery_order') END
            FROM (SELECT e.id, trigger_events.delivery_order_key(p.id, e.id) AS key
                  FROM trigger_events.event_log e
                  WHERE e.trigger_name = p.trigger_name AND e.op = ANY (p.operations)
                    AND (e.subscription_name IS NULL OR e.subscription_name = p.name)
                    AND CASE WHEN by_place THEN NOT pg_visible_in_snapshot(e.transaction_id, p.position)
                                                AND pg_visible_in_snapshot(e.transaction_id, now_snapshot)
                             WHEN e.id <= old_last THEN NOT pg_visible_in_snapshot(e.transaction_id, p.position)
                             ELSE pg_visible_in_snapshot(e.transaction_id, now_snapshot) END
                  ORDER BY e.id) k
            ORDER BY k.id
            ON CONFLICT (subscription_id, event_id) DO NOTHING;
            GET DIAGNOSTICS count_made = ROW_COUNT;
            made := made + count_made;
        END LOOP;
        -- Every place anew, here; what this server's transactions still running will commit is
        -- after it, and the fan-out gives it as usual.
        UPDATE trigger_events.subscription_positions
        SET position = now_snapshot, batch_end = NULL, batch_after_xid = NULL, batch_after_id = NULL, batch_order = NULL,
            updated_at = now();
        -- The old server's transaction ids, frozen: committed long before anything here.
        -- (With this server past them, the old ids are in its past already.)
        UPDATE trigger_events.event_log e SET transaction_id = '2'::xid8
        WHERE NOT by_place AND e.id <= old_last AND e.transaction_id <> '2'::xid8;
        GET DIAGNOSTICS frozen = ROW_COUNT;
    END IF;

    -- The row may be missing (a dump of the schema without its data, then logical replication).
    INSERT INTO trigger_events.installation (event_log_oid, system_identifier)
    VALUES ('trigger_events.event_log'::regclass::oid, here)
    ON CONFLICT (singleton) DO UPDATE
    SET event_log_oid = EXCLUDED.event_log_oid, system_identifier = EXCLUDED.system_identifier, recorded_at = now();
    RETURN format('%s; %s event triggers regenerated, %s renumbered', reason, regenerated, renumbered)
        || CASE WHEN cardinality(unsure) > 0
                THEN format('; not found on their tables, to be attached again: %s', array_to_string(unsure, ', '))
                ELSE '' END
        || CASE WHEN other_server
                THEN format('; %s deliveries made of events not yet given to their subscriptions, the places taken anew, %s events of the old server frozen', made, frozen)
                ELSE '' END;
END
$repair$;
REVOKE ALL ON FUNCTION trigger_events.repair_after_move() FROM PUBLIC;

-- 000025's function, with EXECUTE on moved_reason(), which a worker asks before it starts.
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
    -- The idle flag's hint for capture (000015), read and set beside the flag.
    EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE trigger_events.worker_idle_hint TO %I', role_name);
    -- Each group's retention bounds (000022), recorded by its worker at start, read by retention.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON trigger_events.group_retention TO %I', role_name);
    -- subscription_status_rows(text) (000025): one group's status, for its backlog gauges.
    -- moved_reason() (000027): a worker does not start on a database moved here until migrate
    -- has repaired it.
    EXECUTE format('GRANT EXECUTE ON FUNCTION trigger_events.fan_out(int[], int), '
                   'trigger_events.fan_out(int[], int, int, uuid, timestamptz), '
                   'trigger_events.subscription_status_rows(), trigger_events.subscription_status_rows(text), '
                   'trigger_events.delete_subscription(text), '
                   'trigger_events.delete_delivered_events(bigint[]), trigger_events.moved_reason() TO %I', role_name);
    -- The fan-out, replay and dead retry number the deliveries of ordered subscriptions (000008).
    EXECUTE format('GRANT USAGE ON SEQUENCE trigger_events.delivery_order TO %I', role_name);
END
$$;

-- A worker of schema 26 runs against this schema: it reads relid only through casts and
-- functions that take a regclass as they took an oid, and retention refuses only on a moved
-- database, where it would have lost events.
UPDATE trigger_events.migrations SET workers_from = 26 WHERE version = 27;
