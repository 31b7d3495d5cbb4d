-- What a foreign key deliveries.event_id -> event_log.id would cost (issue 12), bench/README.md
-- "Delivery limits". Run against a freshly migrated database, once with -v fk=0 and once with
-- -v fk=1, alternating, each time on a new database:
--   psql -v fk=1 -d <database> -f bench/sql/deliveries-foreign-key.sql
-- It times the statements of one event's way: capture (100,000 single-row events in one
-- statement), the fan-out into two subscriptions (200,000 delivery rows), the claim's update of
-- every delivery and the result's; and prints the WAL each wrote, which, unlike time, the
-- neighbours of a shared machine do not move.
CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'new', amount numeric, note text);
SELECT trigger_events.attach('orders', 'orders_changed');
INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('s1', 'orders_changed'), ('s2', 'orders_changed');
\if :fk
-- Retention's delete of an event looks its deliveries up by event: without this index, a
-- sequential scan of deliveries for every event deleted.
CREATE INDEX deliveries_event ON trigger_events.deliveries (event_id);
ALTER TABLE trigger_events.deliveries ADD CONSTRAINT deliveries_event_fk FOREIGN KEY (event_id) REFERENCES trigger_events.event_log (id);
\endif
CHECKPOINT;
\timing on
-- capture
SELECT pg_current_wal_lsn() AS wal \gset
INSERT INTO orders SELECT g, 'new', g * 1.5, 'customer ' || g FROM generate_series(1, 100000) g;
SELECT 'capture' AS step, pg_size_pretty(pg_current_wal_lsn() - :'wal') AS wal \gset
\echo :step :wal
-- fan-out
SELECT pg_current_wal_lsn() AS wal \gset
SELECT trigger_events.fan_out(NULL, 1000000);
SELECT 'fan-out' AS step, pg_size_pretty(pg_current_wal_lsn() - :'wal') AS wal \gset
\echo :step :wal
-- claim
SELECT pg_current_wal_lsn() AS wal \gset
UPDATE trigger_events.deliveries SET status = 'in_flight', attempts = attempts + 1, lease_owner = gen_random_uuid(),
    next_attempt_at = now() + interval '60 s', updated_at = now() WHERE status = 'pending';
SELECT 'claim' AS step, pg_size_pretty(pg_current_wal_lsn() - :'wal') AS wal \gset
\echo :step :wal
-- result
SELECT pg_current_wal_lsn() AS wal \gset
UPDATE trigger_events.deliveries SET status = 'delivered', lease_owner = NULL, delivered_at = now(), updated_at = now()
WHERE status = 'in_flight';
SELECT 'result' AS step, pg_size_pretty(pg_current_wal_lsn() - :'wal') AS wal \gset
\echo :step :wal
