using System.Diagnostics;
using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Capture;

/// <summary>Timings of the bulk statement on each table, in milliseconds.</summary>
internal sealed record BulkInsertResult(IReadOnlyList<double> PlainMs, IReadOnlyList<double> AttachedMs, IReadOnlyList<double> PeerMs)
{
    public double BestPlainMs => PlainMs.Min();

    public double BestAttachedMs => AttachedMs.Min();

    public double BestPeerMs => PeerMs.Min();

    public double Ratio => BestAttachedMs / BestPlainMs;

    public double PeerRatio => BestPeerMs / BestPlainMs;
}

/// <summary>
/// (a) One <c>INSERT ... SELECT FROM generate_series</c> statement on the plain, the attached and
/// the peer's table, alternating, each from empty tables after a checkpoint; best of N.
/// </summary>
internal static class BulkInsertBenchmark
{
    public static async Task<BulkInsertResult> RunAsync(
        BenchDatabase database, CaptureOptions options, TextWriter output, CancellationToken cancellationToken)
    {
        // The attached table as installed by default: notify on, worker_signal.idle = true. A
        // statement notifies at most once, so the wake-up setting does not matter here.
        await OrdersSchema.ApplyAsync(database, CaptureMode.NotifyWorkerIdle, cancellationToken);

        output.WriteLine($"(a) {options.BulkRows:N0} rows inserted by one INSERT ... SELECT statement, autocommit, ms (client wall clock, trigger and commit included)");
        var plain = new List<double>();
        var attached = new List<double>();
        var peer = new List<double>();
        await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
        for (var run = 1; run <= options.BulkRepeats; run++)
        {
            foreach (var (mode, timings) in new[] { (CaptureMode.Plain, plain), (CaptureMode.NotifyWorkerIdle, attached), (CaptureMode.Hasura, peer) })
            {
                await OrdersSchema.ResetAsync(database, cancellationToken);
                await using var command = connection.CreateCommand();
                command.CommandText = OrdersSchema.BulkInsert(mode.Table, options.BulkRows);
                var stopwatch = Stopwatch.StartNew();
                await command.ExecuteNonQueryAsync(cancellationToken);
                timings.Add(stopwatch.Elapsed.TotalMilliseconds);

                var (rows, events, deliveries) = await OrdersSchema.CountAsync(database, mode, cancellationToken);
                output.WriteLine($"    run {run}  {mode.Table,-16} {timings[^1],9:F1} ms   rows {rows:N0}, events {events:N0}, delivery rows from the writer {deliveries:N0}");
            }
        }

        var result = new BulkInsertResult(plain, attached, peer);
        output.WriteLine($"    plain    : {Join(plain)}  best {result.BestPlainMs:F1} ms");
        output.WriteLine($"    attached : {Join(attached)}  best {result.BestAttachedMs:F1} ms");
        output.WriteLine($"    Hasura   : {Join(peer)}  best {result.BestPeerMs:F1} ms");
        output.WriteLine($"    ratio to plain (best/best): attached {result.Ratio:F2}x, Hasura-shaped {result.PeerRatio:F2}x");
        output.WriteLine();
        return result;
    }

    private static string Join(IEnumerable<double> values) => string.Join(", ", values.Select(v => $"{v:F1}"));
}
