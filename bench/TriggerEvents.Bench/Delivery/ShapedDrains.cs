using System.Globalization;
using TriggerEvents.Bench.Infrastructure;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// (e) Drains with the delivery features a subscription can ask for: batches of 100, per-key
/// ordering over 1,000 keys, and per-key ordering with a single key (one request in flight at a
/// time, so its rate is bounded by one request's round trip); and batches of 100 with a
/// <c>max_wait</c> of 50 ms under writers paced to the latency rate, where each batch goes out
/// at <c>max_wait</c> before it fills (capture to receipt, against max_wait + 15 ms). Each is a
/// subscription of its own, registered before its events, served by a fresh worker whose file
/// names only it (the others of the group are then paused, and not fanned out).
/// </summary>
internal static class ShapedDrains
{
    /// <summary>The drains, in the order they run.</summary>
    public static readonly IReadOnlyList<string> Names = ["batched", "ordered-1000-keys", "ordered-one-key", "batched-paced"];

    /// <summary>The <c>max_wait</c> of the batched drains, in milliseconds.</summary>
    public const int BatchMaxWaitMs = 50;

    /// <param name="Latency">Capture to receipt, p50 and p99 in milliseconds, for the paced run; null for drains.</param>
    public sealed record Figure(string Name, int Events, double Rate, long Requests, double MedianRequestMs, (double P50, double P99)? Latency = null);

    public static async Task<IReadOnlyList<Figure>> RunAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, DeliveryOptions options, CancellationToken cancellationToken)
    {
        Console.WriteLine($"## (e) Batched and ordered drains: a fresh worker each, every request signed");
        var singleKeyEvents = Math.Min(options.Backlog, 2_000);
        var figures = new List<Figure>();
        foreach (var name in options.ShapedDrains)
        {
            figures.Add(name switch
            {
                "batched" => await DrainAsync(name, Batched, options.Backlog, keys: 5_000),
                "batched-paced" => await PacedAsync(name),
                "ordered-1000-keys" => await DrainAsync(name, """
                        ordering: key
                        ordering_key: [customer_id]
                    """, options.Backlog, keys: 1_000),
                _ => await DrainAsync(name, """
                        ordering: key
                        ordering_key: [customer_id]
                    """, singleKeyEvents, keys: 1),
            });
        }

        Console.WriteLine();
        return figures;

        async Task<Figure> DrainAsync(string name, string shape, int events, int keys)
        {
            var subscription = await RegisterAsync(name);
            await database.ExecuteAsync(
                $"INSERT INTO orders (customer_id, status, amount) SELECT 1 + g % {keys}, 'new', (g % 100000) / 100.0 FROM generate_series(1, {events}) g",
                cancellationToken);
            receiver.TakeArrivals();
            var (configPath, port) = await WriteConfigAsync(subscription, shape);
            try
            {
                if (options.Statements)
                {
                    await StatementProfile.ResetAsync(database, cancellationToken);
                }

                await using var worker = await WorkerUnderTest.StartAsync(connectionString, configPath, port, cancellationToken);
                var ready = DateTimeOffset.UtcNow;
                var start = CpuSplit.Read(worker, database);
                await receiver.WaitForDistinctAsync(events, TimeSpan.FromMinutes(10), cancellationToken);
                var cpu = CpuSplit.Read(worker, database) - start;
                if (options.Statements)
                {
                    await StatementProfile.PrintAsync(database, $"the {name} drain", events, cancellationToken);
                }

                var requests = receiver.Requests;
                var arrivals = receiver.TakeArrivals();
                // The rate runs from the first arrival; before it, the fan-out of the one transaction
                // (an ordered subscription takes none of its events before the last chunk).
                var first = arrivals.Min(a => a.At);
                var rate = events / (arrivals.Max(a => a.At) - first).TotalSeconds;
                var firstAfter = (first - ready).TotalMilliseconds;
                var requestMs = await MedianRequestMsAsync(subscription);
                Console.WriteLine($"    {name}: {events:N0} events over {keys:N0} keys in {requests:N0} requests, {rate:N0} events/s; " +
                    $"first request {firstAfter:N0} ms after the worker was ready; median attempt {requestMs:F2} ms; CPU per event: {cpu.PerEvent(events)}");
                if (keys == 1)
                {
                    Console.WriteLine($"    {Pauses(arrivals)}");
                    Console.WriteLine($"    {await WorkerPausesAsync(subscription)}");
                }
                return new Figure(name, events, rate, requests, requestMs);
            }
            finally
            {
                File.Delete(configPath);
            }
        }

        // Writers paced to the latency rate for the latency run's length, against a fresh worker
        // (after a warm-up of the same length as (b)'s), every event timed from capture to receipt.
        async Task<Figure> PacedAsync(string name)
        {
            var subscription = await RegisterAsync(name);
            var (configPath, port) = await WriteConfigAsync(subscription, Batched);
            var script = await DeliveryBenchmark.WriteWriterScriptAsync(cancellationToken);
            try
            {
                var pgbench = new Pgbench(database);
                await using var worker = await WorkerUnderTest.StartAsync(connectionString, configPath, port, cancellationToken);
                receiver.TakeArrivals();
                if (options.LatencyWarmupSeconds > 0)
                {
                    var warmup = await pgbench.RunAsync(script, options.Writers, options.LatencyWarmupSeconds, cancellationToken, options.LatencyRate);
                    await receiver.WaitForDistinctAsync((int)warmup.Transactions, TimeSpan.FromMinutes(5), cancellationToken);
                    receiver.TakeArrivals();
                }

                var requestsBefore = receiver.Requests;
                var run = await pgbench.RunAsync(script, options.Writers, options.LatencySeconds, cancellationToken, options.LatencyRate);
                await receiver.WaitForDistinctAsync((int)run.Transactions, TimeSpan.FromMinutes(5), cancellationToken);
                var requests = receiver.Requests - requestsBefore;
                var latencies = receiver.TakeArrivals().Select(a => a.LatencyMs).Order().ToArray();
                var (p50, p99) = (Statistics.Percentile(latencies, 50), Statistics.Percentile(latencies, 99));
                Console.WriteLine($"    {name}: writers paced to {run.TransactionsPerSecond:N0} events/s for {options.LatencySeconds} s, {latencies.Length:N0} events in {requests:N0} requests " +
                    $"({(double)latencies.Length / Math.Max(1, requests):F1} a request); capture to receipt p50 {p50:F1} ms, p99 {p99:F1} ms, max {latencies[^1]:F1} ms");
                return new Figure(name, latencies.Length, run.TransactionsPerSecond, requests, await MedianRequestMsAsync(subscription), (p50, p99));
            }
            finally
            {
                File.Delete(configPath);
                File.Delete(script);
            }
        }

        async Task<string> RegisterAsync(string name)
        {
            var subscription = $"bench-{name}";
            await database.ExecuteAsync(
                $"INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight) VALUES ('{subscription}', 'orders', {options.Concurrency})",
                cancellationToken);
            return subscription;
        }

        async Task<(string Path, int Port)> WriteConfigAsync(string subscription, string shape)
        {
            var port = Loopback.FreePort();
            var configPath = Path.Combine(Path.GetTempPath(), $"triggerevents-bench-{Guid.NewGuid():N}.yaml");
            await File.WriteAllTextAsync(configPath, $"""
                subscriptions:
                  - name: {subscription}
                    trigger: orders
                    webhook:
                      url: {receiver.Url}
                      timeout: 10s
                      signing_secret: {DeliveryBenchmark.SigningSecret}
                    max_in_flight: {options.Concurrency}
                {shape}
                worker:
                  batch_size: {options.BatchSize}
                  concurrency: {options.Concurrency}
                  poll_interval: 1s
                  lease: 60s
                  http_port: {port}
                retention:
                  delivered_events: forever
                  attempts: forever
                """, cancellationToken);
            return (configPath, port);
        }

        // The same pauses from the worker's side, by its attempts' start times and durations:
        // time between one request's answer and the next request (the worker's), and requests
        // that took long themselves (the receiver's, or the machine's).
        async Task<string> WorkerPausesAsync(string subscription) =>
            await database.ScalarAsync<string>(string.Create(CultureInfo.InvariantCulture, $$"""
                WITH a AS (
                    SELECT a.started_at, a.duration_ms, lead(a.started_at) OVER (ORDER BY a.started_at, a.attempt_id) AS next
                    FROM trigger_events.attempt_history a JOIN trigger_events.subscriptions s ON s.id = a.subscription_id
                    WHERE s.name = '{{subscription}}'
                ), g AS (
                    SELECT a.duration_ms, extract(epoch FROM a.next - a.started_at) * 1000 - a.duration_ms AS gap FROM a
                )
                SELECT format('by the worker''s clock: from an answer to the next request, median %s µs, %s pauses over 1 ms, %s ms; '
                              '%s requests over 1 ms, %s ms',
                              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY g.gap) * 1000)::numeric),
                              count(*) FILTER (WHERE g.gap > 1), round(coalesce(sum(g.gap) FILTER (WHERE g.gap > 1), 0)::numeric),
                              count(*) FILTER (WHERE g.duration_ms > 1), round(coalesce(sum(g.duration_ms) FILTER (WHERE g.duration_ms > 1), 0)::numeric))
                FROM g
                """), cancellationToken);

        async Task<double> MedianRequestMsAsync(string subscription) =>
            await database.ScalarAsync<double?>(string.Create(CultureInfo.InvariantCulture, $"""
                SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms)
                FROM trigger_events.attempt_history a JOIN trigger_events.subscriptions s ON s.id = a.subscription_id
                WHERE s.name = '{subscription}'
                """), cancellationToken) ?? double.NaN;
    }

    private static readonly string Batched = $"""
            batch:
              max_events: 100
              max_wait: {BatchMaxWaitMs}ms
        """;

    /// <summary>
    /// Where a single key's drain loses time: its requests go one after another, so a pause
    /// between two arrivals far longer than the median is time spent between a key's runs
    /// (the last result written, the key handed on, the next run claimed).
    /// </summary>
    private static string Pauses(IReadOnlyList<BenchReceiver.Arrival> arrivals)
    {
        var times = arrivals.Select(a => a.At).Order().ToList();
        var gaps = times.Zip(times.Skip(1), (a, b) => (b - a).TotalMilliseconds).ToList();
        var median = Statistics.Median(gaps);
        var pauses = gaps.Where(g => g > Math.Max(1, 10 * median)).ToList();
        var span = (times[^1] - times[0]).TotalMilliseconds;
        return $"between arrivals: median {median * 1000:N0} µs; {pauses.Count} pauses over {Math.Max(1, 10 * median):F1} ms, " +
            $"{pauses.Sum():N0} ms of the drain's {span:N0} ms (longest {(pauses.Count == 0 ? 0 : pauses.Max()):F1} ms)";
    }
}
