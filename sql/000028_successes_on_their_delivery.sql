-- 000028: a success is recorded on its delivery's row, not as a row of attempts of its own; the
-- rates of the console and of `subscriptions` are counted per minute.
--
-- Locks: ACCESS EXCLUSIVE for a moment on trigger_events.deliveries (three nullable columns
-- without defaults: nothing is rewritten): claims, results and fan-outs wait for it. A table
-- added; grant_worker_role replaced. None on application tables.
--
-- Why: every result wrote a row of attempts (its heap tuple, its identity, two indexes) beside
-- the update of its delivery, which already says that it was delivered, when and with what
-- status. For a drain of deliveries that succeed at once, the usual case, that row was about a
-- tenth of the server's work per event (bench/README.md, "Successes on their delivery's row").
-- A delivered row now also keeps its success's start, duration and webhook-id, and that success
-- is not logged again; failed attempts are logged as before, and so is a success whose lease had
-- moved on (the row is then another attempt's). An event's history
-- is its attempts and, for a delivered one, its row. A replay keeps the success it undoes by
-- logging it first.
--
-- The console's and `subscriptions`' rates sampled the latest attempts, which now hold failures
-- only. Each result write adds its requests and failures to attempt_counts, one row per
-- subscription, minute and worker (no two workers write one row), which the rates read, and which
-- workers prune after an hour.

ALTER TABLE trigger_events.deliveries
    ADD COLUMN last_started_at  timestamptz,
    ADD COLUMN last_duration_ms double precision,
    ADD COLUMN last_webhook_id  text;
COMMENT ON COLUMN trigger_events.deliveries.last_started_at IS
    'Of a delivered row: when its successful request started (with last_status, last_duration_ms, last_webhook_id), which attempts does not record. NULL otherwise.';
COMMENT ON COLUMN trigger_events.deliveries.last_duration_ms IS
    'Of a delivered row: how long its successful request took.';
COMMENT ON COLUMN trigger_events.deliveries.last_webhook_id IS
    'Of a delivered row: the webhook-id of its successful request, when it was a batch''s (NULL for a single event''s, whose id is msg_<subscription>_<event id>).';

CREATE TABLE trigger_events.attempt_counts (
    subscription_id int         NOT NULL,
    minute          timestamptz NOT NULL,
    worker          uuid        NOT NULL,
    attempts        bigint      NOT NULL,
    failures        bigint      NOT NULL,
    -- Minute first: the rates read the last few minutes of every subscription, and the workers
    -- prune whatever is older than an hour.
    PRIMARY KEY (minute, subscription_id, worker)
);
COMMENT ON TABLE trigger_events.attempt_counts IS
    'Attempts and failed attempts per subscription, minute and worker, added by each result write; the rates of the console and of subscriptions. Kept an hour.';
REVOKE ALL ON trigger_events.attempt_counts FROM PUBLIC;

-- 000027's function, with attempt_counts.
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
    -- Per minute (000028): added to by each result write, pruned by the workers.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON trigger_events.attempt_counts TO %I', role_name);
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

-- A worker of schema 27 runs against this schema: it writes none of the new columns and logs
-- every attempt, its successes included, which an event's history then shows from attempts as
-- before (a row without last_started_at adds none; a schema-28 worker's failure clears them). Its results are not in attempt_counts: while
-- it runs beside workers of this release, the rates count theirs only.
UPDATE trigger_events.migrations SET workers_from = 27 WHERE version = 28;
