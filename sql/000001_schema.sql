-- 000001: the trigger_events schema — event log, delivery state, registries, the SQL API.
--
-- Locks: creates new objects only; takes no lock on application tables. `attach`, when later
-- called, takes SHARE ROW EXCLUSIVE on the table it attaches to (as CREATE TRIGGER does).
--
-- The migrator runs this file in one transaction, after recording version 1 in
-- trigger_events.migrations (created by the migrator itself before the first file).

CREATE SCHEMA IF NOT EXISTS trigger_events;
REVOKE ALL ON SCHEMA trigger_events FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- The immutable event log: who, what, when. Rows are inserted by capture and never updated;
-- retention deletes whole rows once every delivery of them has succeeded.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE trigger_events.event_log (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger_name      text        NOT NULL,
    schema_name       text        NOT NULL,
    table_name        text        NOT NULL,
    op                text        NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'MANUAL')),
    old_data          jsonb,
    new_data          jsonb,
    session_variables jsonb,
    traceparent       text,
    captured_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    transaction_id    xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- The role that made the change (session_user, not the definer capture runs as).
    captured_by       text        NOT NULL DEFAULT session_user
);
COMMENT ON TABLE trigger_events.event_log IS
    'Immutable log of captured row changes. Never updated; delivery state is in deliveries.';

-- Serves replay and backfill (`WHERE captured_at >= $since AND captured_at < $until`) and
-- retention's age test. BRIN: the log is append-only in time order, so a block range index is
-- tiny and costs capture almost nothing, where a btree would cost every insert.
CREATE INDEX event_log_captured_at ON trigger_events.event_log USING brin (captured_at);

-- ---------------------------------------------------------------------------------------------
-- Registry of attached event triggers (filled by attach, emptied by detach).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE trigger_events.event_triggers (
    id              int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text        NOT NULL UNIQUE,
    relid           oid         NOT NULL,
    operations      text[]      NOT NULL,
    update_columns  text[],
    payload_columns text[],
    condition       text,
    notify          boolean     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Registry of subscriptions, written by the worker from the YAML file. Capture fans each event
-- out to the enabled subscriptions of its trigger and operation at capture time.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE trigger_events.subscriptions (
    id            int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_-]{1,63}$'),
    trigger_name  text        NOT NULL,
    operations    text[]      NOT NULL DEFAULT '{INSERT,UPDATE,DELETE,MANUAL}',
    enabled       boolean     NOT NULL DEFAULT true,
    max_attempts  int         NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
    max_in_flight int         NOT NULL DEFAULT 16 CHECK (max_in_flight >= 1),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Serves capture's fan-out lookup (`WHERE trigger_name = $1 AND enabled`), run once per
-- capturing statement.
CREATE INDEX subscriptions_trigger ON trigger_events.subscriptions (trigger_name) WHERE enabled;

-- ---------------------------------------------------------------------------------------------
-- Delivery state: one row per event and subscription, kept apart from the immutable log.
--   pending    due at next_attempt_at (attempts = 0: never tried; > 0: retrying)
--   in_flight  leased by lease_owner until next_attempt_at, when it may be taken over
--   delivered  a 2xx was recorded
--   dead       no more attempts; last_status and last_error say why
-- ---------------------------------------------------------------------------------------------
CREATE TYPE trigger_events.delivery_status AS ENUM ('pending', 'in_flight', 'delivered', 'dead');

CREATE TABLE trigger_events.deliveries (
    subscription_id int                            NOT NULL,
    event_id        bigint                         NOT NULL,
    status          trigger_events.delivery_status NOT NULL DEFAULT 'pending',
    attempts        int                            NOT NULL DEFAULT 0,
    -- For pending rows: when the next attempt is due. For in_flight rows: when the lease
    -- expires. One column for both lets one partial index serve claiming and lease take-over.
    next_attempt_at timestamptz                    NOT NULL DEFAULT now(),
    lease_owner     uuid,
    last_status     int,
    last_error      text,
    delivered_at    timestamptz,
    updated_at      timestamptz                    NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, event_id)
) WITH (
    fillfactor = 80,
    -- A queue table: every delivery is updated twice and later deleted. Vacuum it early and
    -- often so dead rows are reused instead of growing the table (and its partial indexes).
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);
COMMENT ON COLUMN trigger_events.deliveries.next_attempt_at IS
    'pending: when the next attempt is due; in_flight: when the lease expires.';

-- Served the first claim (`WHERE subscription_id = $1 AND status IN ('pending','in_flight') AND
-- next_attempt_at <= now() ORDER BY next_attempt_at`). Partial, so delivered history never
-- slows claiming down however long it grows. 000002 drops it for one partial index per
-- claimable state (deliveries_pending, deliveries_leased); see there why.
CREATE INDEX deliveries_due ON trigger_events.deliveries (subscription_id, next_attempt_at)
    WHERE status IN ('pending', 'in_flight');

-- Serves dead-letter listing and the dead counts of subscription_status.
CREATE INDEX deliveries_dead ON trigger_events.deliveries (subscription_id, event_id)
    WHERE status = 'dead';

-- ---------------------------------------------------------------------------------------------
-- One row per delivery attempt, bounded by retention.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE trigger_events.attempts (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  int         NOT NULL,
    event_id         bigint      NOT NULL,
    attempt          int         NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      double precision NOT NULL,
    http_status      int,
    error            text,
    response_excerpt text,
    worker           uuid
);
-- Serves `dead list --id` and attempt history per delivery.
CREATE INDEX attempts_delivery ON trigger_events.attempts (subscription_id, event_id);
-- Serves retention of attempt records by age.
CREATE INDEX attempts_started_at ON trigger_events.attempts USING brin (started_at);

-- ---------------------------------------------------------------------------------------------
-- The wake-up hint. A NOTIFY makes every notifying commit take one database-wide lock, so
-- capture notifies only while a worker has said it is idle. Workers flip `idle` on state
-- changes only; capture reads this one-row table, which costs a buffer hit.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE trigger_events.worker_signal (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    idle       boolean     NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO trigger_events.worker_signal DEFAULT VALUES;

-- ---------------------------------------------------------------------------------------------
-- Helpers used by generated capture functions.
-- ---------------------------------------------------------------------------------------------

-- The session object from `SET LOCAL trigger_events.session = '<json object>'`. Capture must
-- never fail the application's write for data reasons, so text that is not a JSON object is
-- kept as {"raw": "<text>"} instead of raising.
CREATE FUNCTION trigger_events.session_variables() RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    raw text := current_setting('trigger_events.session', true);
    value jsonb;
BEGIN
    IF raw IS NULL OR raw = '' THEN
        RETURN NULL;
    END IF;
    BEGIN
        value := raw::jsonb;
    EXCEPTION WHEN others THEN
        RETURN jsonb_build_object('raw', raw);
    END;
    IF jsonb_typeof(value) = 'object' THEN
        RETURN value;
    END IF;
    RETURN jsonb_build_object('raw', raw);
END
$$;

-- No SET clause and schema-qualified names: a SET would stop PostgreSQL inlining the function,
-- and parsing it again in every capturing transaction cost almost half a plain INSERT.
CREATE FUNCTION trigger_events.traceparent() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT NULLIF(pg_catalog.current_setting('trigger_events.traceparent', true), '') $$;

-- ---------------------------------------------------------------------------------------------
-- attach(): creates or replaces an event trigger. Generates one capture function per event
-- trigger with the table, columns and condition compiled in, so capture does no lookups or
-- dynamic SQL per row.
--
-- Plain tables capture INSERT and DELETE with statement-level triggers over transition tables
-- (one INSERT ... SELECT per statement, which keeps bulk writes cheap) and UPDATE with a
-- row-level trigger (old and new rows of an UPDATE cannot be paired in transition tables).
-- Partitioned tables use row-level triggers for everything: they are cloned onto every
-- partition, present and future, so writes that name a partition directly are captured too.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION trigger_events.attach(
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
    col text;
    bad text;
    trigger_id int;
    payload_new text;
    payload_old text;
    update_when text;
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
    -- compiled into the capture function below.
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

    -- Row image builders. jsonb_build_object takes at most 100 arguments, so columns are
    -- built in chunks of 50 and concatenated.
    IF payload_columns IS NULL THEN
        payload_new := 'to_jsonb("new")';
        payload_old := 'to_jsonb("old")';
    ELSE
        SELECT string_agg(chunk, ' || ') INTO payload_new FROM (
            SELECT 'jsonb_build_object(' || string_agg(format('%L, "new".%I', c, c), ', ' ORDER BY o) || ')' AS chunk
            FROM unnest(payload_columns) WITH ORDINALITY AS p(c, o) GROUP BY (o - 1) / 50 ORDER BY (o - 1) / 50) s;
        SELECT string_agg(chunk, ' || ') INTO payload_old FROM (
            SELECT 'jsonb_build_object(' || string_agg(format('%L, "old".%I', c, c), ', ' ORDER BY o) || ')' AS chunk
            FROM unnest(payload_columns) WITH ORDINALITY AS p(c, o) GROUP BY (o - 1) / 50 ORDER BY (o - 1) / 50) s;
    END IF;

    -- An UPDATE produces an event only if a listened column changed. Compared as text, so types
    -- without an equality operator (json, point, xml) work and a column of such a type added
    -- later never makes the application's UPDATE fail.
    IF update_columns IS NULL THEN
        update_when := '(OLD.*)::text IS DISTINCT FROM (NEW.*)::text';
    ELSE
        SELECT string_agg(format('OLD.%1$I::text IS DISTINCT FROM NEW.%1$I::text', c), ' OR ')
        INTO update_when FROM unnest(update_columns) AS c;
    END IF;

    PERFORM trigger_events.create_capture_objects(
        trigger_id, trigger_name, rel.nspname, rel.relname, tbl, rel.relkind, ops,
        payload_old, payload_new, update_when, cond, notify);

    RETURN CASE WHEN existing.id IS NULL THEN 'created' ELSE 'replaced' END;
END
$attach$;

-- Builds the capture functions and PG triggers of one event trigger. Internal to attach.
CREATE FUNCTION trigger_events.create_capture_objects(
    trigger_id int, trigger_name text, schema_name text, table_name text, tbl regclass, relkind "char",
    ops text[], payload_old text, payload_new text, update_when text, cond text, notify boolean
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $create$
DECLARE
    -- One statement inserts the events and fans them out to the enabled subscriptions of this
    -- trigger and operation. format() fills every slot in one pass, so no generated or user
    -- text is ever scanned again for placeholders.
    capture_template CONSTANT text := $sql$
DECLARE
    _te_fanned_out bigint;
    -- Read once per call: for statement-level functions that is once per statement.
    -- The plpgsql helper only when the setting is there: most transactions never set it.
    _te_session CONSTANT jsonb := CASE WHEN pg_catalog.current_setting('trigger_events.session', true) <> ''
                                       THEN trigger_events.session_variables() END;
    _te_trace CONSTANT text := trigger_events.traceparent();
BEGIN
    WITH captured AS (
        INSERT INTO trigger_events.event_log
            (trigger_name, schema_name, table_name, op, old_data, new_data, session_variables, traceparent)
        SELECT %1$L, %2$L, %3$L, %4$s, %5$s, %6$s, _te_session, _te_trace
        %7$s
        WHERE (%8$s
        )
        RETURNING id
    )
    INSERT INTO trigger_events.deliveries (subscription_id, event_id)
    SELECT s.id, captured.id
    FROM captured CROSS JOIN trigger_events.subscriptions s
    WHERE s.trigger_name = %1$L AND s.enabled AND %4$s = ANY (s.operations);
%9$s
    RETURN NULL;
END$sql$;
    -- NOTIFY only if the statement created deliveries and a worker has said it is idle: a
    -- notifying commit takes a database-wide lock that busy writers must not pay for.
    notify_sql CONSTANT text := CASE WHEN notify THEN $n$
    GET DIAGNOSTICS _te_fanned_out = ROW_COUNT;
    IF _te_fanned_out > 0 AND (SELECT idle FROM trigger_events.worker_signal) THEN
        PERFORM pg_notify('trigger_events', '');
    END IF;$n$ ELSE '' END;
    condition_sql CONSTANT text := coalesce(cond, 'true');
    create_function CONSTANT text :=
        'CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L';
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
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS te_new FOR EACH STATEMENT EXECUTE FUNCTION %s()',
            'te_' || trigger_name || '_insert', tbl, fn);
    END IF;
    IF relkind = 'r' AND 'DELETE' = ANY (ops) THEN
        fn := format('trigger_events.capture_%s_delete', trigger_id);
        EXECUTE format(create_function, fn, '#variable_conflict use_column' || format(capture_template,
            trigger_name, schema_name, table_name, '''DELETE''', payload_old, 'NULL',
            CASE WHEN cond IS NULL THEN 'FROM te_old AS "old"'
                 ELSE format('FROM te_old AS "old" LEFT JOIN %s AS "new" ON false', tbl) END,
            condition_sql, notify_sql));
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS te_old FOR EACH STATEMENT EXECUTE FUNCTION %s()',
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
            EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s()',
                'te_' || trigger_name || '_update', tbl, update_when, fn);
        END IF;
        IF relkind = 'p' AND 'INSERT' = ANY (ops) THEN
            EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s()',
                'te_' || trigger_name || '_insert', tbl, fn);
        END IF;
        IF relkind = 'p' AND 'DELETE' = ANY (ops) THEN
            EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()',
                'te_' || trigger_name || '_delete', tbl, fn);
        END IF;
    END IF;
END
$create$;

-- Drops the PG triggers and capture functions of one event trigger. Internal.
CREATE FUNCTION trigger_events.drop_capture_objects(trigger_id int) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $drop$
DECLARE
    t record;
BEGIN
    -- Every PG trigger that calls one of this event trigger's functions. Clones on partitions
    -- (tgparentid <> 0) go with their parent's trigger.
    FOR t IN
        SELECT tg.tgname, tg.tgrelid::regclass AS rel
        FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'trigger_events'
          AND p.proname IN (format('capture_%s_insert', trigger_id), format('capture_%s_delete', trigger_id),
                            format('capture_%s_row', trigger_id))
          AND tg.tgparentid = 0
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
    END LOOP;
    FOR t IN
        SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'trigger_events'
          AND p.proname IN (format('capture_%s_insert', trigger_id), format('capture_%s_delete', trigger_id),
                            format('capture_%s_row', trigger_id))
    LOOP
        EXECUTE format('DROP FUNCTION %s', t.fn);
    END LOOP;
END
$drop$;

-- detach(): removes an event trigger. Captured events stay and are delivered.
CREATE FUNCTION trigger_events.detach(trigger_name text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing trigger_events.event_triggers;
BEGIN
    SELECT * INTO existing FROM trigger_events.event_triggers et WHERE et.name = detach.trigger_name FOR UPDATE;
    IF existing.id IS NULL THEN
        RETURN false;
    END IF;
    PERFORM trigger_events.drop_capture_objects(existing.id);
    DELETE FROM trigger_events.event_triggers et WHERE et.id = existing.id;
    RETURN true;
END
$$;

-- invoke(): captures a MANUAL event in the caller's transaction and returns its id. SECURITY
-- DEFINER so an application role granted EXECUTE needs no privilege on the tables.
CREATE FUNCTION trigger_events.invoke(trigger_name text, payload jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing trigger_events.event_triggers;
    rel record;
    new_event_id bigint;
    _te_fanned_out bigint;
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
    INSERT INTO trigger_events.deliveries (subscription_id, event_id)
    SELECT s.id, new_event_id FROM trigger_events.subscriptions s
    WHERE s.trigger_name = existing.name AND s.enabled AND 'MANUAL' = ANY (s.operations);
    GET DIAGNOSTICS _te_fanned_out = ROW_COUNT;
    IF existing.notify AND _te_fanned_out > 0 AND (SELECT idle FROM trigger_events.worker_signal) THEN
        PERFORM pg_notify('trigger_events', '');
    END IF;
    RETURN new_event_id;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Views for DBAs and operators.
-- ---------------------------------------------------------------------------------------------
CREATE VIEW trigger_events.triggers AS
SELECT et.name,
       n.nspname AS table_schema,
       c.relname AS table_name,
       et.operations,
       et.update_columns,
       et.payload_columns,
       et.condition,
       et.notify,
       c.oid IS NOT NULL AS table_exists,
       et.created_at,
       et.updated_at
FROM trigger_events.event_triggers et
LEFT JOIN pg_class c ON c.oid = et.relid
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace;

CREATE VIEW trigger_events.subscription_status AS
SELECT s.name AS subscription,
       s.trigger_name,
       s.enabled,
       coalesce(q.pending, 0) AS pending,
       coalesce(q.retrying, 0) AS retrying,
       coalesce(q.in_flight, 0) AS in_flight,
       coalesce(dead.dead, 0) AS dead,
       oldest.captured_at AS oldest_pending_captured_at,
       extract(epoch FROM now() - oldest.captured_at)::double precision AS oldest_pending_age_seconds
FROM trigger_events.subscriptions s
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE dl.status = 'pending' AND dl.attempts = 0) AS pending,
           count(*) FILTER (WHERE dl.status = 'pending' AND dl.attempts > 0) AS retrying,
           count(*) FILTER (WHERE dl.status = 'in_flight') AS in_flight,
           min(dl.event_id) AS oldest_event_id
    FROM trigger_events.deliveries dl
    WHERE dl.subscription_id = s.id AND dl.status IN ('pending', 'in_flight')
) q ON true
LEFT JOIN trigger_events.event_log oldest ON oldest.id = q.oldest_event_id
LEFT JOIN LATERAL (
    SELECT count(*) AS dead FROM trigger_events.deliveries dl
    WHERE dl.subscription_id = s.id AND dl.status = 'dead'
) dead ON true;

-- Tables are private; the API is for DBAs (attach, detach) and whom they grant (invoke).
REVOKE ALL ON ALL TABLES IN SCHEMA trigger_events FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA trigger_events FROM PUBLIC;
