using System.Diagnostics;
using System.Globalization;
using TriggerEvents.Bench.Infrastructure;
using LogRetention = TriggerEvents.Postgres.Operations.Retention;

namespace TriggerEvents.Bench.Retention;

/// <summary>
/// <c>retention</c>: the log as it is (one table, retention deletes rows in batches) against the
/// same log partitioned by capture time (retention drops whole partitions), in one run. Measures
/// what each costs retention (time, WAL, what is left to vacuum), what each costs a capture
/// (single-row inserts into the log under pgbench, alternating rounds) and what each costs the
/// claim's lookup of events by id (which knows no capture time, so a partitioned log is probed
/// in every partition).
/// </summary>
/// <remarks>
/// Leaves out: the capture trigger itself (both variants pay it alike; the inserts go straight
/// into the log) and the deliveries table, whose delivered rows retention deletes row by row in
/// both variants (a partitioned log does not partition them).
/// </remarks>
internal static class RetentionBenchmark
{
    private const string DatabaseName = "retention_bench";
    private const int Days = 10;

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var eventsPerDay = args.Length >= 2 && args[0] == "--events-per-day"
            ? int.Parse(args[1], NumberStyles.None, CultureInfo.InvariantCulture)
            : 50_000;
        const int rounds = 5;
        const int seconds = 5;
        const int clients = 4;

        var elapsed = Stopwatch.StartNew();
        await using var database = await BenchDatabase.StartAsync(DatabaseName, ["autovacuum=off"], cancellationToken);
        var server = await ServerInfo.ReadAsync(database, cancellationToken);
        Console.WriteLine("# TriggerEvents retention benchmark: the log as one table, or partitioned by capture time");
        Console.WriteLine();
        server.WriteTo(Console.Out);
        Console.WriteLine($"Log:        {Days} days of {eventsPerDay:N0} events a day (orders rows, about 200 bytes of JSON each); retention removes the oldest half");
        Console.WriteLine($"Load:       {MachineLoad.Describe()} at start");
        Console.WriteLine();

        // The partitioned twin: one partition a day, a primary key that has to include the
        // partition key, and the same other indexes as the log (the fan-out's, the BRIN).
        await database.ExecuteAsync("CREATE SEQUENCE bench_log_id_seq", cancellationToken);
        await database.ExecuteAsync("""
            CREATE TABLE bench_log (
                id bigint NOT NULL DEFAULT nextval('bench_log_id_seq'),
                trigger_name text NOT NULL, schema_name text NOT NULL, table_name text NOT NULL, op text NOT NULL,
                old_data jsonb, new_data jsonb, session_variables jsonb, traceparent text,
                captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
                captured_by text NOT NULL DEFAULT session_user,
                PRIMARY KEY (id, captured_at)
            ) PARTITION BY RANGE (captured_at)
            """, cancellationToken);
        await database.ExecuteAsync("CREATE INDEX ON bench_log (transaction_id, id)", cancellationToken);
        await database.ExecuteAsync("CREATE INDEX ON bench_log USING brin (captured_at)", cancellationToken);
        for (var day = -Days; day <= 1; day++)
        {
            await database.ExecuteAsync(
                $"CREATE TABLE bench_log_d{day + Days} PARTITION OF bench_log FOR VALUES FROM (date_trunc('day', now()) + interval '{day} days') TO (date_trunc('day', now()) + interval '{day + 1} days')",
                cancellationToken);
        }

        // The same events in both logs, captured_at spread over the days.
        const string generated = """
            SELECT 'orders', 'public', 'orders', 'INSERT', NULL::jsonb,
                   jsonb_build_object('id', g, 'customer_id', g % 5000, 'status', 'new', 'amount', (g % 100000) / 100.0,
                                      'created_at', now(), 'note', repeat('x', 60)),
                   date_trunc('day', now()) - interval '{0} days' + (g * interval '1 day' / {1})
            FROM generate_series(0, {2}) AS g
            """;
        var total = Days * eventsPerDay;
        var select = string.Format(CultureInfo.InvariantCulture, generated, Days, eventsPerDay, total - 1);
        await database.ExecuteAsync(
            $"INSERT INTO trigger_events.event_log (trigger_name, schema_name, table_name, op, old_data, new_data, captured_at) {select}", cancellationToken);
        await database.ExecuteAsync(
            $"INSERT INTO bench_log (trigger_name, schema_name, table_name, op, old_data, new_data, captured_at) {select}", cancellationToken);
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.event_log, bench_log", cancellationToken);

        Console.WriteLine("## Retention of the oldest five days");
        // Exactly the five oldest days, the partitions dropped below.
        var olderThan = await database.ScalarAsync<TimeSpan>($"SELECT now() - (date_trunc('day', now()) - interval '{Days / 2} days')", cancellationToken);
        var delete = await MeasureAsync(database, async () =>
        {
            var result = await LogRetention.RunOnceAsync(database.DataSource, olderThan, attempts: null, group: "default", progress: null, cancellationToken);
            return result.Events;
        }, cancellationToken);
        var deleteVacuum = await MeasureAsync(database, async () =>
        {
            await database.ExecuteAsync("VACUUM trigger_events.event_log", cancellationToken);
            return 0;
        }, cancellationToken);
        var drop = await MeasureAsync(database, async () =>
        {
            long removed = 0;
            for (var day = 0; day < Days / 2; day++)
            {
                removed += await database.ScalarAsync<long>($"SELECT count(*) FROM bench_log_d{day}", cancellationToken);
                await database.ExecuteAsync($"DROP TABLE bench_log_d{day}", cancellationToken);
            }

            return removed;
        }, cancellationToken);
        var logSize = await database.ScalarAsync<long>("SELECT pg_total_relation_size('trigger_events.event_log')", cancellationToken);
        var partitionedSize = await database.ScalarAsync<long>(
            "SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits WHERE inhparent = 'bench_log'::regclass", cancellationToken);
        Console.WriteLine($"    one table, batched DELETE: {delete.Rows:N0} events in {delete.Seconds:F2} s, WAL {delete.WalMiB:F1} MiB; then VACUUM {deleteVacuum.Seconds:F2} s, WAL {deleteVacuum.WalMiB:F1} MiB; size after {logSize / 1048576.0:F1} MiB (the space is reused, not returned)");
        Console.WriteLine($"    partitioned, DROP of 5 partitions: {drop.Rows:N0} events in {drop.Seconds:F2} s, WAL {drop.WalMiB:F2} MiB; nothing to vacuum; size after {partitionedSize / 1048576.0:F1} MiB");
        Console.WriteLine();

        // Capture: single-row inserts straight into each log, alternating rounds.
        var scripts = Path.Combine(Path.GetTempPath(), $"triggerevents-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scripts);
        var pgbench = new Pgbench(database);
        var ratios = new List<double>();
        try
        {
            foreach (var (name, table) in new[] { ("table", "trigger_events.event_log"), ("partitioned", "bench_log") })
            {
                await File.WriteAllTextAsync(Path.Combine(scripts, $"{name}.sql"), $$"""
                    INSERT INTO {{table}} (trigger_name, schema_name, table_name, op, new_data) VALUES ('orders', 'public', 'orders', 'INSERT', '{"id": 1, "status": "new", "amount": 10.0}');

                    """, cancellationToken);
            }

            Console.WriteLine($"## Single-row inserts into the log (pgbench -c {clients} -T {seconds}, {rounds} alternating rounds)");
            for (var round = 1; round <= rounds; round++)
            {
                var table = await pgbench.RunAsync(Path.Combine(scripts, "table.sql"), clients, seconds, cancellationToken);
                var partitioned = await pgbench.RunAsync(Path.Combine(scripts, "partitioned.sql"), clients, seconds, cancellationToken);
                ratios.Add(partitioned.TransactionsPerSecond / table.TransactionsPerSecond);
                Console.WriteLine($"    round {round}: one table {table.TransactionsPerSecond:N0} tx/s, partitioned {partitioned.TransactionsPerSecond:N0} tx/s, ratio {ratios[^1]:F2}");
            }

            Console.WriteLine($"    partitioned / one table, median of rounds: {Statistics.Median(ratios):F2}x");
            Console.WriteLine();
        }
        finally
        {
            Directory.Delete(scripts, recursive: true);
        }

        // The claim's join: 100 recent event ids looked up by id alone.
        Console.WriteLine("## Lookup of 100 events by id (as a claim joins its deliveries to the log), median of 200");
        var oneTable = await LookupAsync(database, "trigger_events.event_log", cancellationToken);
        var partitionedLookup = await LookupAsync(database, "bench_log", cancellationToken);
        Console.WriteLine($"    one table: {oneTable:F3} ms; partitioned ({Days / 2 + 2} partitions left): {partitionedLookup:F3} ms ({partitionedLookup / oneTable:F1}x)");
        Console.WriteLine();
        Console.WriteLine($"Load average at end: {MachineLoad.Describe()}");
        Console.WriteLine($"Total time: {elapsed.Elapsed.TotalSeconds:F0} s");
        return 0;
    }

    private static async Task<(long Rows, double Seconds, double WalMiB)> MeasureAsync(BenchDatabase database, Func<Task<long>> work, CancellationToken cancellationToken)
    {
        var walBefore = await database.ScalarAsync<string>("SELECT pg_current_wal_insert_lsn()::text", cancellationToken);
        var stopwatch = Stopwatch.StartNew();
        var rows = await work();
        var seconds = stopwatch.Elapsed.TotalSeconds;
        var wal = await database.ScalarAsync<decimal>($"SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{walBefore}')", cancellationToken);
        return (rows, seconds, (double)wal / 1048576.0);
    }

    private static async Task<double> LookupAsync(BenchDatabase database, string table, CancellationToken cancellationToken)
    {
        var sql = $"""
            SELECT count(*) FROM unnest(ARRAY(SELECT (SELECT max(id) FROM {table}) - g FROM generate_series(1, 100) g)) AS k(id)
            JOIN {table} e ON e.id = k.id
            """;
        await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new Npgsql.NpgsqlCommand(sql, connection);
        await command.PrepareAsync(cancellationToken);
        var timings = new List<double>();
        for (var i = 0; i < 220; i++)
        {
            var stopwatch = Stopwatch.StartNew();
            await command.ExecuteScalarAsync(cancellationToken);
            if (i >= 20)
            {
                timings.Add(stopwatch.Elapsed.TotalMilliseconds);
            }
        }

        return Statistics.Median(timings);
    }
}
