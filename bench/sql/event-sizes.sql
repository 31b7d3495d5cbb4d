-- How an event's size can be told at claim (issue 12), bench/README.md "Delivery limits": the
-- stored size (pg_column_size: free, but compressed or binary) against the length of the text the
-- worker reads, and what rendering that text costs. Run against a freshly migrated database:
--   psql -d <database> -f bench/sql/event-sizes.sql
CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'new', amount numeric, note text);
SELECT trigger_events.attach('orders', 'orders_changed');
INSERT INTO orders SELECT g, 'new', g * 1.5, 'customer ' || g FROM generate_series(1, 100000) g;
-- 2 MB rows: hexadecimal text (pglz does not compress it) and a repeated word (it does).
INSERT INTO orders SELECT 1000000 + g, 'big', 1, (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 65536)) FROM generate_series(1, 4) g;
INSERT INTO orders SELECT 2000000 + g, 'big', 1, repeat('abcdefgh', 262144) FROM generate_series(1, 4) g;
SELECT (new_data->>'id')::bigint >= 2000000 AS repeated, pg_column_size(new_data) AS stored, octet_length(new_data::text) AS text_bytes,
       pg_column_compression(new_data) AS compression
FROM trigger_events.event_log WHERE new_data->>'status' = 'big' ORDER BY id;
\timing on
-- 100,000 typical rows: the stored size, then the text's length
SELECT sum(pg_column_size(new_data)) FROM trigger_events.event_log WHERE new_data->>'status' = 'new';
SELECT sum(octet_length(new_data::text)) FROM trigger_events.event_log WHERE new_data->>'status' = 'new';
-- the eight 2 MB rows
SELECT sum(octet_length(new_data::text)) FROM trigger_events.event_log WHERE new_data->>'status' = 'big';
