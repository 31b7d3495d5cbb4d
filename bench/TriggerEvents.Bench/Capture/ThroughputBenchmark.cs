using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Capture;

/// <summary>The measured pgbench runs of one configuration at one client count.</summary>
internal sealed record ThroughputResult(CaptureMode Mode, int Clients, IReadOnlyList<double> TransactionsPerSecond)
{
    public double Median => Statistics.Median([.. TransactionsPerSecond]);
}

/// <summary>
/// (b) Single-row INSERT transactions per second, driven by pgbench, for every
/// <see cref="CaptureMode"/> at each client count. Rounds are interleaved (plain, notify off,
/// busy, idle; plain, ...) so drift on the machine spreads over all configurations; each run
/// starts from empty tables after a checkpoint.
/// </summary>
internal static class ThroughputBenchmark
{
    public static async Task<IReadOnlyList<ThroughputResult>> RunAsync(
        BenchDatabase database, CaptureOptions options, TextWriter output, CancellationToken cancellationToken)
    {
        var scripts = Path.Combine(Path.GetTempPath(), $"triggerevents-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scripts);
        try
        {
            foreach (var table in new[] { OrdersSchema.PlainTable, OrdersSchema.AttachedTable })
            {
                await File.WriteAllTextAsync(Path.Combine(scripts, $"{table}.sql"), OrdersSchema.PgbenchScript(table), cancellationToken);
            }

            var pgbench = new Pgbench(database);
            var results = new List<ThroughputResult>();
            output.WriteLine($"(b) single-row INSERT transactions per second (pgbench -n -c N -j N -T {options.Seconds}, 'tps' without connection time), median of {options.Repeats}");
            foreach (var clients in options.Clients)
            {
                if (options.WarmupSeconds > 0)
                {
                    foreach (var mode in CaptureMode.All)
                    {
                        await RunOnceAsync(database, pgbench, scripts, mode, clients, options.WarmupSeconds, cancellationToken);
                    }

                    output.WriteLine($"    {clients} clients: warm-up done ({options.WarmupSeconds} s per configuration, not counted)");
                }

                var tps = CaptureMode.All.ToDictionary(m => m, _ => new List<double>());
                for (var run = 1; run <= options.Repeats; run++)
                {
                    foreach (var mode in CaptureMode.All)
                    {
                        var measured = await RunOnceAsync(database, pgbench, scripts, mode, clients, options.Seconds, cancellationToken);
                        tps[mode].Add(measured.Pgbench.TransactionsPerSecond);
                        output.WriteLine($"    {clients,2} clients  run {run}  {mode.Label,-38} {measured.Describe()}");
                    }
                }

                foreach (var mode in CaptureMode.All)
                {
                    results.Add(new ThroughputResult(mode, clients, tps[mode]));
                }

                var plain = results.Single(r => r.Clients == clients && r.Mode == CaptureMode.Plain).Median;
                foreach (var result in results.Where(r => r.Clients == clients))
                {
                    output.WriteLine($"    {clients,2} clients  median {result.Mode.Label,-38} {result.Median,9:F0} tx/s   {result.Median / plain:F2}x plain");
                }

                output.WriteLine();
            }

            return results;
        }
        finally
        {
            Directory.Delete(scripts, recursive: true);
        }
    }

    private static async Task<MeasuredRun> RunOnceAsync(
        BenchDatabase database, Pgbench pgbench, string scripts, CaptureMode mode, int clients, int seconds, CancellationToken cancellationToken)
    {
        await OrdersSchema.ResetAsync(database, cancellationToken);
        await OrdersSchema.ApplyAsync(database, mode, cancellationToken);
        var script = Path.Combine(scripts, $"{mode.Table}.sql");

        // An idle worker's LISTEN connection, during every run where capture may notify.
        NotificationCounter? listener = mode.Notify == true
            ? await NotificationCounter.StartAsync(database.DataSource, cancellationToken)
            : null;
        try
        {
            var result = await pgbench.RunAsync(script, clients, seconds, cancellationToken);
            long? wakeUps = listener is null ? null : await listener.StopAsync(database.DataSource, cancellationToken);
            var (rows, events, deliveries) = await OrdersSchema.CountAsync(database, mode, cancellationToken);
            return new MeasuredRun(mode, result, rows, events, deliveries, wakeUps);
        }
        finally
        {
            if (listener is not null)
            {
                await listener.DisposeAsync();
            }
        }
    }

    private sealed record MeasuredRun(CaptureMode Mode, PgbenchResult Pgbench, long Rows, long Events, long Deliveries, long? WakeUps)
    {
        public string Describe()
        {
            var text = $"{Pgbench.TransactionsPerSecond,9:F0} tx/s  lat {Pgbench.LatencyMs,6:F2} ms  rows {Rows:N0}";
            if (Mode.IsAttached)
            {
                text += $", events {Events:N0}, deliveries {Deliveries:N0}";
                if (Events != Rows || Deliveries != Rows)
                {
                    text += "  (MISMATCH: expected one event and one delivery per row)";
                }
            }

            if (WakeUps is { } received)
            {
                text += $", wake-ups {received:N0}";
            }

            return text;
        }
    }
}
