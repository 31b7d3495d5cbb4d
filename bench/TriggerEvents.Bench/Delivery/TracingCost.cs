using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// <c>delivery --tracing N</c>: what tracing the attempts costs a drain. Rounds alternate a worker
/// with tracing off (no OTLP endpoint, as shipped by default) and one exporting every attempt's
/// span over OTLP/HTTP to <see cref="OtlpSink"/>; each round is a fresh worker draining a backlog,
/// then the same worker, once idle, draining a second one. Events/s and worker CPU per event
/// for each, the medians per mode at the end.
/// </summary>
internal static class TracingCost
{
    /// <summary>
    /// Sent in batches of at most 512 (the SDK's default) or every 200 ms, so the last batch of a
    /// drain leaves soon after its last attempt and its export is inside the CPU window.
    /// </summary>
    private const string ScheduleDelayMs = "200";

    private sealed record Round(bool Tracing, double FreshRate, double FreshCpuUs, double RunningRate, double RunningCpuUs, long Spans);

    public static async Task RunAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, string configPath, int port, DeliveryOptions options, CancellationToken cancellationToken)
    {
        using var sink = OtlpSink.Start();
        Console.WriteLine($"## Tracing cost: {options.TracingRounds} round(s) each of tracing off and on, alternating (off/on, then on/off), " +
            $"a fresh worker draining {options.Backlog:N0} events, then the same worker idle draining {options.Backlog:N0} more");
        Console.WriteLine($"    on: OTEL_EXPORTER_OTLP_ENDPOINT={sink.Endpoint} OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_BSP_SCHEDULE_DELAY={ScheduleDelayMs}, " +
            "to a sink in the benchmark process that answers 200 and counts (its CPU is in the receiver's)");
        Console.WriteLine();

        var rounds = new List<Round>();
        for (var i = 0; i < options.TracingRounds; i++)
        {
            foreach (var tracing in i % 2 == 0 ? new[] { false, true } : [true, false])
            {
                var round = await RunRoundAsync(tracing);
                rounds.Add(round);
                Console.WriteLine($"    round {i + 1}, tracing {(tracing ? "on " : "off")}: fresh {round.FreshRate:N0} events/s, worker {round.FreshCpuUs:N0} µs/event; " +
                    $"running {round.RunningRate:N0} events/s, worker {round.RunningCpuUs:N0} µs/event" +
                    (tracing ? $"; {round.Spans:N0} spans of {2 * options.Backlog:N0} attempts exported" : ""));
            }
        }

        Console.WriteLine();
        Console.WriteLine("| tracing, median of rounds | fresh worker events/s | worker µs/event | running worker events/s | worker µs/event |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
        foreach (var tracing in new[] { false, true })
        {
            var mode = rounds.Where(r => r.Tracing == tracing).ToList();
            Console.WriteLine($"| {(tracing ? "on (OTLP/HTTP)" : "off")} | {Statistics.Median([.. mode.Select(r => r.FreshRate)]):N0} | {Statistics.Median([.. mode.Select(r => r.FreshCpuUs)]):N0} " +
                $"| {Statistics.Median([.. mode.Select(r => r.RunningRate)]):N0} | {Statistics.Median([.. mode.Select(r => r.RunningCpuUs)]):N0} |");
        }

        Console.WriteLine();

        async Task<Round> RunRoundAsync(bool tracing)
        {
            await database.ExecuteAsync(DeliveryBenchmark.InsertRows(options.Backlog), cancellationToken);
            receiver.TakeArrivals();
            sink.Take();
            var environment = tracing
                ? new Dictionary<string, string?>
                {
                    ["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.Endpoint.ToString(),
                    ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
                    ["OTEL_BSP_SCHEDULE_DELAY"] = ScheduleDelayMs,
                }
                // Off as shipped: whatever the benchmark's own environment says.
                : new Dictionary<string, string?> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = null, ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = null };
            await using var worker = await WorkerUnderTest.StartAsync(connectionString, configPath, port, cancellationToken, environment);
            var (freshRate, freshCpu) = await DrainAsync(worker, spansBefore: 0);
            await DeliveryBenchmark.WaitUntilQuietAsync(worker, cancellationToken);
            await database.ExecuteAsync(DeliveryBenchmark.InsertRows(options.Backlog), cancellationToken);
            var (runningRate, runningCpu) = await DrainAsync(worker, spansBefore: options.Backlog);
            await worker.StopAsync();
            return new Round(tracing, freshRate, freshCpu, runningRate, runningCpu, sink.Take().Spans);

            async Task<(double Rate, double CpuUs)> DrainAsync(WorkerUnderTest worker, long spansBefore)
            {
                var start = worker.Cpu;
                await receiver.WaitForDistinctAsync(options.Backlog, TimeSpan.FromMinutes(10), cancellationToken);
                if (tracing && !await sink.WaitForSpansAsync(spansBefore + options.Backlog, TimeSpan.FromSeconds(10), cancellationToken))
                {
                    // Not an error: a full export queue drops spans by design. The count is printed.
                    Console.WriteLine("    (not every span arrived within 10 s of the last delivery)");
                }

                var cpu = worker.Cpu - start;
                var arrivals = receiver.TakeArrivals();
                var rate = options.Backlog / (arrivals.Max(a => a.At) - arrivals.Min(a => a.At)).TotalSeconds;
                return (rate, cpu.TotalMicroseconds / options.Backlog);
            }
        }
    }
}
