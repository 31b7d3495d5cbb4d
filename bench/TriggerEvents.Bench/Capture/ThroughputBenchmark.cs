using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Capture;

/// <summary>
/// The measured pgbench runs of one configuration at one client count, and each run's ratio to
/// the plain table's run of the same round.
/// </summary>
internal sealed record ThroughputResult(CaptureMode Mode, int Clients, IReadOnlyList<double> TransactionsPerSecond, IReadOnlyList<double> RatiosToPlain)
{
    public double Median => Statistics.Median([.. TransactionsPerSecond]);

    /// <summary>The median of the per-round ratios: the figure the goals are judged on.</summary>
    public double MedianRatio => Statistics.Median([.. RatiosToPlain]);
}

/// <summary>
/// (b) Single-row INSERT transactions per second, driven by pgbench, for every
/// <see cref="CaptureMode"/> at each client count. Rounds are interleaved (plain, peer, busy,
/// ...; plain, ...) so drift on the machine spreads over all configurations, and each ratio is
/// taken within one round; each run starts from empty tables after a checkpoint.
/// </summary>
internal static class ThroughputBenchmark
{
    /// <summary>
    /// How often the idle configuration arms the wake-up flag again: a worker takes a claim and a
    /// flag write or two per wake-up, so about 500 a second is more than one could.
    /// </summary>
    public static readonly TimeSpan RearmInterval = TimeSpan.FromMilliseconds(2);

    public static async Task<IReadOnlyList<ThroughputResult>> RunAsync(
        BenchDatabase database, CaptureOptions options, TextWriter output, CancellationToken cancellationToken)
    {
        var scripts = Path.Combine(Path.GetTempPath(), $"triggerevents-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scripts);
        try
        {
            foreach (var table in new[] { OrdersSchema.PlainTable, OrdersSchema.AttachedTable, OrdersSchema.HasuraTable })
            {
                await File.WriteAllTextAsync(Path.Combine(scripts, $"{table}.sql"), OrdersSchema.PgbenchScript(table), cancellationToken);
            }

            var pgbench = new Pgbench(database);
            var results = new List<ThroughputResult>();
            output.WriteLine($"(b) single-row INSERT transactions per second (pgbench -n -c N -j N -T {options.Seconds}, 'tps' without connection time), {options.Repeats} alternating rounds; ratio: median of the per-round ratios to plain");
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
                        output.WriteLine($"    {clients,2} clients  run {run}  {mode.Label,-40} {measured.Describe()}");
                    }
                }

                var plainRuns = tps[CaptureMode.Plain];
                foreach (var mode in CaptureMode.All)
                {
                    results.Add(new ThroughputResult(mode, clients, tps[mode], [.. tps[mode].Select((t, round) => t / plainRuns[round])]));
                }

                foreach (var result in results.Where(r => r.Clients == clients))
                {
                    output.WriteLine($"    {clients,2} clients  median {result.Mode.Label,-40} {result.Median,9:F0} tx/s   {result.MedianRatio:F2}x plain " +
                        $"(rounds: {string.Join(", ", result.RatiosToPlain.Select(r => r.ToString("F2", System.Globalization.CultureInfo.InvariantCulture)))})");
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

        // An idle worker's LISTEN connection, during every run where capture may notify, and
        // its going idle again as fast as a worker could.
        NotificationCounter? listener = mode.Notify == true
            ? await NotificationCounter.StartAsync(database.DataSource, cancellationToken)
            : null;
        using var rearming = new CancellationTokenSource();
        var rearm = mode.MayNotify ? RearmAsync(database, rearming.Token) : Task.CompletedTask;
        try
        {
            var result = await pgbench.RunAsync(script, clients, seconds, cancellationToken);
            await rearming.CancelAsync();
            await rearm;
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

    private static async Task RearmAsync(BenchDatabase database, CancellationToken stop)
    {
        // As a worker that keeps going idle does: the flag and its hint together, since the
        // capture that takes the flag clears the hint (migration 000024).
        var worker = new TriggerEvents.Postgres.Delivery.DeliveryStore(database.DataSource);
        while (!stop.IsCancellationRequested)
        {
            await worker.ArmWakeUpAsync(CancellationToken.None);
            try
            {
                await Task.Delay(RearmInterval, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private sealed record MeasuredRun(CaptureMode Mode, PgbenchResult Pgbench, long Rows, long Events, long Deliveries, long? WakeUps)
    {
        public string Describe()
        {
            var text = $"{Pgbench.TransactionsPerSecond,9:F0} tx/s  lat {Pgbench.LatencyMs,6:F2} ms  rows {Rows:N0}";
            if (Mode.IsAttached || Mode.IsPeer)
            {
                text += $", events {Events:N0}";
                if (Events != Rows || Deliveries != 0)
                {
                    text += $"  (MISMATCH: expected one event per row and no delivery rows from the writers; deliveries {Deliveries:N0})";
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
