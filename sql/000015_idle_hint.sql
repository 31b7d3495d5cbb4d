-- 000015: a capture reads the worker's idle flag only while a worker may be idle.
--
-- Locks: SHARE ROW EXCLUSIVE for a moment on every attached table while its capture triggers
-- are replaced (CREATE OR REPLACE TRIGGER), as in 000004. Creating a sequence locks nothing
-- else. No new right for writers; the worker's role gets SELECT and UPDATE on the new sequence.
--
-- Why: every capturing statement read trigger_events.worker_signal to decide whether to send a
-- wake-up, a query of its own in the capture function: single-row INSERTs with a busy worker ran
-- at 0.57x plain against 0.61x with the wake-up turned off (bench/README.md, "The idle hint").
-- The worker now also sets a one-row sequence to 1 when it says it is idle and to 0 when it takes
-- work, and capture reads that first, with pg_sequence_last_value(), which plpgsql evaluates as
-- an expression, without starting a query. A sequence's value is not transactional: it is a
-- hint, never the flag. Only when it is 1 does capture read the flag, and wake_worker() takes the
-- flag as before, so at most one writer sends a wake-up. A hint left at 0 by a worker that
-- stopped costs a wake-up, never an event: the next worker that says it is idle sets it to 1
-- again, and the poll finds what was committed meanwhile. Workers of the previous release never
-- set it, and it starts at 1: beside them capture reads the flag as before.

CREATE SEQUENCE trigger_events.worker_idle_hint MINVALUE 0 MAXVALUE 1 START 1 NO CYCLE;
COMMENT ON SEQUENCE trigger_events.worker_idle_hint IS
    'Whether a worker may be idle (1) or all are busy (0), set by workers beside worker_signal.idle; capture reads it before the flag.';
SELECT pg_catalog.setval('trigger_events.worker_idle_hint', 1);
REVOKE ALL ON SEQUENCE trigger_events.worker_idle_hint FROM PUBLIC;

-- Whoever may set the idle flag may read and set the hint: the workers' roles, granted by
-- grant_worker_role() or by hand.
DO $$
DECLARE
    grant_to record;
BEGIN
    FOR grant_to IN
        SELECT DISTINCT a.grantee::regrole AS role
        FROM pg_class c CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        WHERE c.oid = 'trigger_events.worker_signal'::regclass AND a.privilege_type = 'UPDATE'
          AND a.grantee <> 0
          AND a.grantee <> (SELECT s.relowner FROM pg_class s WHERE s.oid = 'trigger_events.worker_idle_hint'::regclass)
    LOOP
        EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE trigger_events.worker_idle_hint TO %s', grant_to.role);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The capture template, as in 000004 but for the wake-up's hint.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION trigger_events.capture_template_version() RETURNS int
LANGUAGE sql IMMUTABLE
RETURN 5;

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
-- grant_worker_role(): as in 000013, and the hint.
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
    -- The idle flag's hint for capture (000015), read and set beside the flag.
    EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE trigger_events.worker_idle_hint TO %I', role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION trigger_events.fan_out(int[], int), '
                   'trigger_events.fan_out(int[], int, int, uuid, timestamptz), '
                   'trigger_events.subscription_status_rows(), trigger_events.delete_subscription(text), '
                   'trigger_events.delete_delivered_events(bigint[]) TO %I', role_name);
    -- The fan-out, replay and dead retry number the deliveries of ordered subscriptions (000008).
    EXECUTE format('GRANT USAGE ON SEQUENCE trigger_events.delivery_order TO %I', role_name);
END
$$;
REVOKE ALL ON FUNCTION trigger_events.grant_worker_role(name) FROM PUBLIC;

-- Every attached trigger moves to the new template now, in this transaction.
SELECT trigger_events.install_capture(et.id) FROM trigger_events.event_triggers et
WHERE et.template_version < trigger_events.capture_template_version() ORDER BY et.id;
REVOKE ALL ON FUNCTION trigger_events.create_capture_function(text, text, regclass, "char", text, text[], text, text, text, text, int2[], boolean, text, boolean)
    FROM PUBLIC;
