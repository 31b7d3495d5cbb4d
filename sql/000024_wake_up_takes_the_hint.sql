-- 000024: the capture that takes the idle flag takes its hint too; workers no longer clear them.
--
-- Locks: none on tables (wake_worker() replaced, its owner, grants and settings kept). No new
-- rights: wake_worker() runs inside the schema's own SECURITY DEFINER functions (capture,
-- invoke) or as the schema owner (backfill).
--
-- Why: a worker that took work after it had said it was idle cleared the flag and its hint
-- (000015), to spare busy workers' captures the read of the flag. With two groups' workers on
-- one database that silenced the other group: team B's idle worker had armed the flag, team
-- A's worker cleared it when its own backlog came in, and team B's events waited for team B's
-- next poll (worker.poll_interval) for as long as team A stayed busy. Now workers only ever set
-- the flag, and the capture that takes it to send the wake-up sets the hint to 0 as well, so
-- the captures after it skip the flag as before. A worker that goes busy without being woken
-- leaves the flag armed; the next capture then sends one wake-up more, and takes it.

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
        -- The hint is not transactional: the captures after this one skip the flag at once.
        -- Should this transaction roll back, the flag comes back armed and the hint stays 0
        -- until a worker says it is idle again, at its next empty round: a wake-up missed,
        -- which the poll covers, never an event.
        PERFORM pg_catalog.setval('trigger_events.worker_idle_hint', 0);
        PERFORM pg_notify('trigger_events', '');
    END IF;
END
$$;
