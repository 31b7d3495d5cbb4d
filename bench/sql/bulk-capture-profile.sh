#!/usr/bin/env bash
# Where the bulk INSERT's capture time goes (bench/README.md "Where a bulk INSERT's capture goes"):
# the capture benchmark's 20,000-row INSERT ... SELECT into an attached table, with one cost of
# capture taken away at a time. Each variant runs as the benchmark does (one connection; per
# statement TRUNCATE, CHECKPOINT, the INSERT, autocommit), with perf sampling the server process
# of that connection. The figure is the INSERT's samples over its samples outside capture (the
# trigger, and the filling of its transition table): the statement against the same statement
# without capture, both measured in the same run, so the neighbours of a shared machine, which
# move wall-clock and CPU times by half, move it little.
#
# Needs psql, perf (run as root, or with perf_event_paranoid allowing it) and python3, on the
# machine of the server; the connection in the usual PG* variables, to a freshly migrated
# database on a throwaway cluster (the benchmark's settings: fsync, synchronous_commit and
# full_page_writes off, autovacuum off). It creates orders_plain and orders_attached there.
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres PGDATABASE=capture_profile bench/sql/bulk-capture-profile.sh [rounds]
set -euo pipefail
rounds=${1:-2}
warmup=${WARMUP:-4}
statements=${STATEMENTS:-12}
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

q() { psql -qXAt -v ON_ERROR_STOP=1 "$@"; }

q <<'SQL' >/dev/null
CREATE TABLE IF NOT EXISTS orders_plain (id bigserial PRIMARY KEY, customer_id bigint, status text, amount numeric(12,2), created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS orders_attached (id bigserial PRIMARY KEY, customer_id bigint, status text, amount numeric(12,2), created_at timestamptz DEFAULT now());
SELECT trigger_events.attach('orders_attached', 'orders');
INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('orders-webhook', 'orders') ON CONFLICT DO NOTHING;
UPDATE trigger_events.worker_signal SET idle = true;
SQL
id=$(q -c "SELECT id FROM trigger_events.event_triggers WHERE name = 'orders'")
fn="trigger_events.capture_${id}_insert"
regenerate="SELECT trigger_events.install_capture($id);"
# The generated function's source with one expression replaced.
rewrite() { echo "SELECT regexp_replace(pg_get_functiondef('$fn'::regproc), '$1', \$r\$$2\$r\$) \\gexec"; }
# A captured row image of the same size, for the variant that stores one without computing it.
q -c "INSERT INTO orders_attached (customer_id, status, amount, created_at) VALUES (2, 'paid', 0.01, now())" >/dev/null
sample=$(q -c "SELECT new_data FROM trigger_events.event_log ORDER BY id DESC LIMIT 1")

names=(); setups=(); teardowns=()
variant() { names+=("$1"); setups+=("$2"); teardowns+=("$3"); }
variant "attached (as shipped)" "" ""
variant "capture function that only returns (transition table kept)" \
  "$(rewrite '(BEGIN).*(END)' '\1 RETURN NULL; \2')" "$regenerate"
variant "row-level trigger instead of the transition table" \
  "DROP TRIGGER te_orders_insert ON orders_attached; DROP TRIGGER te_orders_no_parent ON orders_attached;
   CREATE FUNCTION trigger_events.capture_profile_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS \$f\$
   BEGIN
       INSERT INTO trigger_events.event_log (trigger_name, schema_name, table_name, op, new_data, session_variables, traceparent)
       VALUES ('orders', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, to_jsonb(NEW),
               CASE WHEN current_setting('trigger_events.session', true) <> '' THEN trigger_events.session_variables() END,
               trigger_events.traceparent());
       RETURN NULL;
   END\$f\$;
   CREATE TRIGGER te_orders_insert AFTER INSERT ON orders_attached FOR EACH ROW EXECUTE FUNCTION trigger_events.capture_profile_row();" \
  "DROP TRIGGER te_orders_insert ON orders_attached; DROP FUNCTION trigger_events.capture_profile_row(); $regenerate"
variant "no row image (new_data NULL)" "$(rewrite 'to_jsonb\("new"\)' 'NULL::jsonb')" "$regenerate"
variant "row image computed, '{}' stored" \
  "$(rewrite 'to_jsonb\("new"\)' "CASE WHEN to_jsonb(\"new\") IS NOT NULL THEN '{}'::jsonb END")" "$regenerate"
variant "a constant row image of the same size stored, none computed" \
  "$(rewrite 'to_jsonb\("new"\)' "'$sample'::jsonb")" "$regenerate"
variant "transaction_id, captured_at, captured_by once per statement" \
  "$(rewrite 'condition_error\)\s+SELECT (.*) FROM te_new AS "new"' 'condition_error, transaction_id, captured_at, captured_by) SELECT \1, k.x, k.t, k.u FROM (SELECT pg_current_xact_id() AS x, clock_timestamp() AS t, session_user::text AS u) k, te_new AS "new"')" \
  "$regenerate"
variant "event_log.id sequence CACHE 1000" \
  "ALTER TABLE trigger_events.event_log ALTER COLUMN id SET CACHE 1000;" \
  "ALTER TABLE trigger_events.event_log ALTER COLUMN id SET CACHE 1;"
variant "SECURITY INVOKER" "ALTER FUNCTION $fn() SECURITY INVOKER;" "$regenerate"
variant "without the primary key's index" \
  "ALTER TABLE trigger_events.event_log DROP CONSTRAINT event_log_pkey;" \
  "ALTER TABLE trigger_events.event_log ADD CONSTRAINT event_log_pkey PRIMARY KEY (id);"
variant "without event_log_transaction (transaction_id, id)" \
  "DROP INDEX trigger_events.event_log_transaction;" \
  "CREATE INDEX event_log_transaction ON trigger_events.event_log (transaction_id, id);"
variant "without the BRIN on captured_at" \
  "DROP INDEX trigger_events.event_log_captured_at;" \
  "CREATE INDEX event_log_captured_at ON trigger_events.event_log USING brin (captured_at);"
variant "without the partial index on condition errors" \
  "DROP INDEX trigger_events.event_log_condition_errors;" \
  "CREATE INDEX event_log_condition_errors ON trigger_events.event_log (trigger_name) WHERE condition_error IS NOT NULL;"
variant "without any index on event_log" \
  "ALTER TABLE trigger_events.event_log DROP CONSTRAINT event_log_pkey; DROP INDEX trigger_events.event_log_transaction, trigger_events.event_log_captured_at, trigger_events.event_log_condition_errors;" \
  "ALTER TABLE trigger_events.event_log ADD CONSTRAINT event_log_pkey PRIMARY KEY (id);
   CREATE INDEX event_log_transaction ON trigger_events.event_log (transaction_id, id);
   CREATE INDEX event_log_captured_at ON trigger_events.event_log USING brin (captured_at);
   CREATE INDEX event_log_condition_errors ON trigger_events.event_log (trigger_name) WHERE condition_error IS NOT NULL;"

statement="TRUNCATE orders_plain, orders_attached, trigger_events.event_log, trigger_events.deliveries RESTART IDENTITY;
CHECKPOINT;
INSERT INTO orders_attached (customer_id, status, amount)
SELECT 1 + g % 5000, (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g % 4], (g % 100000) / 100.0
FROM generate_series(1, 20000) AS g;"

# Prints the INSERT's samples and its samples in capture, from one perf recording.
count() {
  perf script -i "$1" -F ip,sym 2>/dev/null | python3 -c '
import sys
statement = trigger = 0
for s in sys.stdin.read().split("\n\n"):
    if "ExecuteTruncate" in s or "RequestCheckpoint" in s: continue
    if "standard_ExecutorRun" not in s and "standard_ExecutorFinish" not in s: continue
    statement += 1
    # The trigger, and the rows it is handed: ExecARInsertTriggers puts each row in the
    # transition table.
    trigger += "plpgsql_exec_trigger" in s or "ExecARInsertTriggers" in s
print(statement, trigger)'
}

declare -A ratios
for round in $(seq "$rounds"); do
  for i in "${!names[@]}"; do
    if [ -n "${setups[$i]}" ]; then q <<<"${setups[$i]}" >/dev/null; fi
    {
      for _ in $(seq "$warmup"); do echo "$statement"; done
      echo "SELECT pg_backend_pid() AS pid \\gset"
      echo "\\setenv PROFILE_PID :pid"
      echo "\\! (perf record -o $work/perf.data -p \$PROFILE_PID -F 4999 -g >/dev/null 2>&1 & echo \$! > $work/perf.pid); sleep 1"
      for _ in $(seq "$statements"); do echo "$statement"; done
      echo "\\! kill -INT \$(cat $work/perf.pid); sleep 2"
    } | q >/dev/null
    if [ -n "${teardowns[$i]}" ]; then q <<<"${teardowns[$i]}" >/dev/null; fi
    read -r total trigger < <(count "$work/perf.data")
    ratio=$(python3 -c "print(f'{$total / ($total - $trigger):.2f}')")
    ratios[$i]="${ratios[$i]:-}${ratios[$i]:+, }$ratio"
    echo "round $round  ${names[$i]}: ${ratio}x ($total samples, $trigger in capture)" >&2
  done
done

echo "| variant | INSERT over the same INSERT without capture (per round) |"
echo "| --- | --- |"
for i in "${!names[@]}"; do echo "| ${names[$i]} | ${ratios[$i]} |"; done
