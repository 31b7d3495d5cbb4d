-- The compose sample's start, run by its `setup` service after `migrate`: a sample table, its
-- event trigger, and the login role the workers use with only the worker's rights. Every
-- statement may run again on the next `docker compose up`.
CREATE TABLE IF NOT EXISTS orders (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
SELECT trigger_events.attach('orders', 'orders_changed');
DO $$
BEGIN
    CREATE ROLE trigger_events_worker LOGIN PASSWORD 'worker';
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
\ir worker-role.sql
