-- 000026: each migration says which earlier releases' workers run against the schema it leaves.
--
-- Locks: ACCESS EXCLUSIVE for a moment on trigger_events.migrations (a nullable column without a
-- default: nothing is rewritten), which only migrate and a worker's start read. No lock on
-- application tables; no new rights (the worker's role reads this table already).
--
-- Why: a worker refused to start on a schema newer than its own, whatever the newer migrations
-- changed. During a rollout, a worker of the release before that restarted (a crash, a node
-- drained) after the migrate Job had run could not start again, and rolling the workers back to
-- that release after an upgrade was impossible short of restoring the database, even though a
-- running worker of it kept delivering through the same upgrade (every migration so far was
-- written to keep it working). Now a migration that keeps them working says so, and a worker,
-- or `migrate`, of an earlier release starts on the newer schema as long as every migration it
-- does not know says so. One that does not say it (NULL) refuses them, as before.

ALTER TABLE trigger_events.migrations ADD COLUMN workers_from int;
COMMENT ON COLUMN trigger_events.migrations.workers_from IS
    'The oldest schema version whose workers run against the schema this migration leaves; NULL: this version (no earlier release''s worker starts on it).';

-- Every migration from now on ends by setting its own row, after checking what a worker of that
-- version reads, writes and calls. The rows before this one stay NULL: no worker that reads this
-- column knows fewer than 26 migrations.
--
-- This migration adds a column only a newer worker reads: workers of schema 25 run against it.
UPDATE trigger_events.migrations SET workers_from = 25 WHERE version = 26;
