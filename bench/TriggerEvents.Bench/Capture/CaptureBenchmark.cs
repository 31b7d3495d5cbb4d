using System.Diagnostics;
using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Capture;

/// <summary>
/// <c>capture</c>: what attaching an event trigger costs the application's writes. One fresh
/// cluster for the whole run; (a) a bulk INSERT ... SELECT, (b) single-row INSERT throughput
/// under pgbench, each on a plain and an attached copy of the same table; then a summary.
/// </summary>
internal static class CaptureBenchmark
{
    private const string DatabaseName = "capture_bench";

    // Autovacuum off so that a background vacuum or analyze never lands inside one run and not
    // another; each run starts from truncated tables instead (see OrdersSchema.ResetAsync).
    private static readonly string[] DefaultServerSettings = ["autovacuum=off"];

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        CaptureOptions options;
        try
        {
            options = CaptureOptions.Parse(args);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            await Console.Error.WriteLineAsync(e.Message);
            return 2;
        }

        var output = Console.Out;
        var elapsed = Stopwatch.StartNew();
        await using var database = await BenchDatabase.StartAsync(DatabaseName, [.. DefaultServerSettings, .. options.ServerSettings], cancellationToken);
        var server = await ServerInfo.ReadAsync(database, cancellationToken);
        output.WriteLine("# TriggerEvents capture benchmark");
        output.WriteLine();
        server.WriteTo(output);
        output.WriteLine($"Cluster:    fresh throwaway cluster on 127.0.0.1:{database.Port}, database {DatabaseName}");
        output.WriteLine($"Tables:     {OrdersSchema.PlainTable}, {OrdersSchema.AttachedTable} and {OrdersSchema.HasuraTable}, identical; the second attached as '{OrdersSchema.TriggerName}' " +
            $"(INSERT, UPDATE, DELETE) with subscription '{OrdersSchema.SubscriptionName}' (and 9 more where the configuration says 10), the third with the Hasura-shaped row trigger");
        output.WriteLine("Worker:     none runs; 'worker busy' and 'idle' are the wake-up signal held as a worker sets it. The writers make no delivery rows: the worker's fan-out, after commit, is measured by the delivery benchmark");
        output.WriteLine("Each run:   TRUNCATE the tables, both event logs and deliveries RESTART IDENTITY; CHECKPOINT");
        output.WriteLine($"Load:       {MachineLoad.Describe()} at start");
        output.WriteLine();

        await OrdersSchema.CreateAsync(database, cancellationToken);
        var bulk = await BulkInsertBenchmark.RunAsync(database, options, output, cancellationToken);
        var throughput = await ThroughputBenchmark.RunAsync(database, options, output, cancellationToken);

        CaptureSummary.Write(output, server, options, bulk, throughput);
        output.WriteLine();
        output.WriteLine($"Load average at end: {MachineLoad.Describe()}");
        output.WriteLine($"Total time: {elapsed.Elapsed.TotalSeconds:F0} s");
        return 0;
    }
}
