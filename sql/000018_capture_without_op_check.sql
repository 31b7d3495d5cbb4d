-- 000018: the log's op check is dropped; every capture statement paid for it.
--
-- Locks: ACCESS EXCLUSIVE for a moment on trigger_events.event_log (dropping a constraint scans
-- nothing); capture into attached tables waits for this transaction's commit. No new rights.
--
-- Why: PostgreSQL reads a CHECK constraint's stored expression and plans it again for every
-- statement that inserts into the table, before the first row is checked. A single-row writer's
-- capture is one such statement per transaction, and the check was about an eighth of capture's
-- server time there (perf over a single-row INSERT into an attached table: 12 % of the capture
-- trigger's samples in ExecConstraints, most of them reading and planning the expression; the
-- row's own test is a few comparisons). It guarded against nothing a writer can do: the log's
-- only writers are this schema's SECURITY DEFINER functions (capture, invoke, backfill_chunk),
-- each of which writes one of the five operations, and application roles have no right on the
-- table. A row with another op, written by the schema's owner by hand, reaches no subscription:
-- the fan-out gives an event only to subscriptions whose operations include its op.

ALTER TABLE trigger_events.event_log DROP CONSTRAINT IF EXISTS event_log_op_check;

COMMENT ON COLUMN trigger_events.event_log.op IS
    'INSERT, UPDATE, DELETE (captured), MANUAL (invoke) or READ (backfill): written only by the schema''s own functions, unchecked (000018).';
