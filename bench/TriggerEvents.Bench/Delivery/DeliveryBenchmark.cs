using System.Diagnostics;
using Npgsql;
using TriggerEvents.Bench.Infrastructure;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// <c>delivery</c>: the real worker draining into a local receiver. In one run on one fresh
/// cluster: the receiver's own ceiling under a plain HTTP load; (a) the drain rate of a backlog;
/// (b) end-to-end latency while single-row writers insert as fast as they can; (c) the worker's
/// peak memory and drain rate by segment while it drains a large backlog.
/// </summary>
internal static class DeliveryBenchmark
{
    private const string DatabaseName = "delivery_bench";
    internal const string Subscription = "bench-hook";

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        DeliveryOptions options;
        try
        {
            options = DeliveryOptions.Parse(args);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            await Console.Error.WriteLineAsync(e.Message);
            return 2;
        }

        var elapsed = Stopwatch.StartNew();
        WorkerUnderTest.WorkerEnvironment = options.WorkerEnvironment;
        await WorkerUnderTest.PublishAsync(cancellationToken);
        var baseline = options.Baseline is { } gitRef ? await BaselineComparison.PublishAsync(gitRef, cancellationToken) : null;
        await using var database = await BenchDatabase.StartAsync(
            DatabaseName, options.Statements ? [.. StatementProfile.Settings, .. options.ServerSettings] : options.ServerSettings, cancellationToken);
        var server = await ServerInfo.ReadAsync(database, cancellationToken);
        Console.WriteLine("# TriggerEvents delivery benchmark");
        Console.WriteLine();
        server.WriteTo(Console.Out);
        Console.WriteLine($"Worker:     the real executable, published as deploy/Dockerfile does (Native AOT; {WorkerUnderTest.ExecutablePath}), batch_size {options.BatchSize}, " +
            $"concurrency {options.Concurrency}, max_in_flight {options.Concurrency}, poll_interval 1s, one subscription");
        Console.WriteLine("Receiver:   a minimal HTTP/1.1 server on 127.0.0.1 in the benchmark process (sockets, keep-alive), answers 204 at once");
        Console.WriteLine($"Load:       {MachineLoad.Describe()} at start");
        Console.WriteLine();

        await database.ExecuteAsync(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint, status text, amount numeric(12,2), created_at timestamptz DEFAULT now())",
            cancellationToken);
        await database.ExecuteAsync("SELECT trigger_events.attach('orders', 'orders')", cancellationToken);
        // Registered ahead of the backlog, so that its place in the log is before it: the worker's
        // fan-out turns the backlog into deliveries as it drains, and that is measured too.
        await database.ExecuteAsync(
            $"INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight) VALUES ('{Subscription}', 'orders', {options.Concurrency})",
            cancellationToken);

        await using var receiver = BenchReceiver.Start();
        var ceiling = await MeasureCeilingAsync(receiver, options, options.Concurrency, cancellationToken);
        Console.WriteLine($"## Receiver ceiling: {ceiling:N0} requests/s (plain HTTP POSTs of a 400-byte body, {options.Concurrency} concurrent connections, {options.CeilingSeconds} s)");
        // What bounds a key's events, which go one request after another: the same POSTs, one at a time.
        var oneAtATime = await MeasureCeilingAsync(receiver, options, connections: 1, cancellationToken);
        Console.WriteLine($"    one request at a time, on one connection: {oneAtATime:N0} requests/s, a round trip of {1e6 / oneAtATime:N0} µs");
        Console.WriteLine();

        var connectionString = new NpgsqlConnectionStringBuilder(database.DataSource.ConnectionString) { Database = DatabaseName }.ConnectionString;
        var configPath = WriteConfig(receiver, options);
        if (options.TracingRounds > 0 || options.ConsoleRounds > 0 || options.TakeOverRounds > 0 || baseline is not null || options.MemoryVariants.Count > 0)
        {
            try
            {
                if (options.MemoryVariants.Count > 0)
                {
                    await MemoryVariants.RunAsync(database, receiver, connectionString, configPath, options, cancellationToken);
                }

                if (options.TakeOverRounds > 0)
                {
                    // With --baseline, the rounds compare the two builds' take-over instead of their drains.
                    await TakeOverCost.RunAsync(
                        database, receiver, connectionString, configPath, options, baseline is null ? null : (options.Baseline!, baseline), cancellationToken);
                }
                else if (baseline is not null)
                {
                    await BaselineComparison.RunAsync(options.Baseline!, baseline, options.BaselineRounds, async executable =>
                    {
                        var (fresh, running) = await MeasureDrainAsync(database, receiver, connectionString, configPath, options, cancellationToken, executable);
                        var (_, paced) = await MeasureLatencyAsync(database, receiver, connectionString, configPath, options, cancellationToken, executable);
                        Console.WriteLine($"    drain: fresh {fresh:N0}, running {running:N0} events/s; paced to {paced.Rate:N0} events/s: p50 {paced.P50:F1} ms, p99 {paced.P99:F1} ms; {paced.Split}");
                        return new BaselineComparison.Round("", fresh, running, paced.P50, paced.P99);
                    }, cancellationToken);
                }

                if (options.TracingRounds > 0)
                {
                    await TracingCost.RunAsync(database, receiver, connectionString, configPath, PortOf(configPath), options, cancellationToken);
                }

                if (options.ConsoleRounds > 0)
                {
                    await ConsoleCost.RunAsync(database, receiver, connectionString, configPath, PortOf(configPath), options, cancellationToken);
                }
            }
            finally
            {
                File.Delete(configPath);
            }

            Console.WriteLine($"Load average at end: {MachineLoad.Describe()}");
            Console.WriteLine($"Total time: {elapsed.Elapsed.TotalSeconds:F0} s");
            return 0;
        }

        try
        {
            var (drain, runningDrain) = await MeasureDrainAsync(database, receiver, connectionString, configPath, options, cancellationToken);
            Console.WriteLine($"## (a) Drain of a {options.Backlog:N0}-event backlog: {drain:N0} events/s, {drain / ceiling:P0} of the receiver's ceiling");
            Console.WriteLine($"    by the same worker, running, of a second backlog committed at once: {runningDrain:N0} events/s, {runningDrain / ceiling:P0} of the ceiling");
            Console.WriteLine();

            var besideSnapshot = await MeasureBesideOpenSnapshotAsync(database, receiver, connectionString, configPath, options, cancellationToken);
            Console.WriteLine();

            var (latency, paced) = await MeasureLatencyAsync(database, receiver, connectionString, configPath, options, cancellationToken);
            Console.WriteLine($"## (b) End-to-end latency, {options.Writers} single-row writers as fast as they can for {options.LatencySeconds} s: " +
                $"{latency.Rate:N0} events/s written and delivered; p50 {latency.P50:F1} ms, p99 {latency.P99:F1} ms, max {latency.Max:F1} ms ({latency.Count:N0} events, after a {options.LatencyWarmupSeconds} s warm-up under the same load)");
            Console.WriteLine($"    {latency.Split}");
            Console.WriteLine($"    the same writers paced to {options.LatencyRate:N0} events/s in all, then, for {options.LatencySeconds} s: " +
                $"{paced.Rate:N0} events/s; p50 {paced.P50:F1} ms, p99 {paced.P99:F1} ms, max {paced.Max:F1} ms ({paced.Count:N0} events)");
            Console.WriteLine($"    {paced.Split}");
            Console.WriteLine();

            var peer = options.PeerRounds > 0
                ? await PeerDrainComparison.RunAsync(database, receiver, connectionString, configPath, PortOf(configPath), options, cancellationToken)
                : null;

            var memory = await MeasureMemoryAsync(database, receiver, connectionString, configPath, options, cancellationToken);
            Console.WriteLine($"## (c) Draining {options.MemoryEvents:N0} events: peak worker memory {memory.PeakMiB:F0} MiB (VmHWM), {memory.Rate:N0} events/s overall");
            Console.WriteLine("    drain rate by segment of the backlog (a flat claim cost keeps these level as delivered history grows):");
            Console.WriteLine("    " + string.Join(", ", memory.SegmentRates.Select(r => $"{r:N0}")));
            Console.WriteLine();

            // After (c): each of (e)'s workers names only its own subscription, which pauses
            // bench-hook, and a later bench-hook worker would send (e)'s events too.
            var shaped = options.ShapedDrains.Count > 0
                ? await ShapedDrains.RunAsync(database, receiver, connectionString, options, cancellationToken)
                : [];

            Console.WriteLine("## Summary");
            Console.WriteLine();
            Console.WriteLine("| figure | measured | goal |");
            Console.WriteLine("| --- | --- | --- |");
            Console.WriteLine($"| receiver ceiling (plain HTTP load) | {ceiling:N0} req/s | |");
            Console.WriteLine($"| drain, {options.Backlog:N0} backlog, batch {options.BatchSize}, concurrency {options.Concurrency} | {drain:N0} events/s ({drain / ceiling:P0} of ceiling) | >= 15,000 events/s |");
            Console.WriteLine($"| drain of a second backlog by the running worker | {runningDrain:N0} events/s ({runningDrain / ceiling:P0} of ceiling) | >= 11,364 events/s |");
            Console.WriteLine($"| running drain while another session holds a snapshot, over the same without | {besideSnapshot:F2}x | |");
            Console.WriteLine($"| latency p50 / p99, writers as fast as they can ({latency.Rate:N0} events/s) | {latency.P50:F1} / {latency.P99:F1} ms | <= 5 / 20 ms at >= 2,000 events/s |");
            Console.WriteLine($"| latency p50 / p99, writers paced to {paced.Rate:N0} events/s | {paced.P50:F1} / {paced.P99:F1} ms | <= 3 / 15 ms at >= 2,000 events/s, commit to request |");
            if (peer is not null)
            {
                Console.WriteLine($"| fresh drain beside graphile-worker, median of {options.PeerRounds} rounds | TriggerEvents {Statistics.Median(peer.Ours):N0}, graphile-worker {Statistics.Median(peer.Peer):N0} events/s; {peer.MedianRatio:F2}x | |");
            }

            foreach (var figure in shaped)
            {
                Console.WriteLine(figure.Latency is { } batchLatency
                    ? $"| latency p50 / p99, {figure.Name} (max_events 100, max_wait {ShapedDrains.BatchMaxWaitMs} ms), writers paced to {figure.Rate:N0} events/s | {batchLatency.P50:F1} / {batchLatency.P99:F1} ms, {(double)figure.Events / Math.Max(1, figure.Requests):F1} events a request | p99 <= {ShapedDrains.BatchMaxWaitMs + 15} ms, capture to receipt |"
                    : $"| drain, {figure.Name}, {figure.Events:N0} events | {figure.Rate:N0} events/s in {figure.Requests:N0} requests (median attempt {figure.MedianRequestMs:F2} ms{(figure.Name == "ordered-one-key" ? $"; {figure.Rate / oneAtATime:P0} of one request at a time" : "")}) | {ShapedGoal(figure.Name)} |");
            }

            Console.WriteLine($"| worker peak memory, {options.MemoryEvents:N0} backlog | {memory.PeakMiB:F0} MiB | < 100 MiB, flat |");
            Console.WriteLine($"| drain rate first / last segment | {memory.SegmentRates.First():N0} / {memory.SegmentRates.Last():N0} events/s | flat |");
        }
        finally
        {
            File.Delete(configPath);
        }

        Console.WriteLine();
        Console.WriteLine($"Load average at end: {MachineLoad.Describe()}");
        Console.WriteLine($"Total time: {elapsed.Elapsed.TotalSeconds:F0} s");
        return 0;
    }

    private static string ShapedGoal(string name) => name switch
    {
        "batched" => ">= 50,000 events/s",
        "ordered-1000-keys" => ">= 8,000 events/s",
        _ => "bounded by one request's round trip",
    };

    /// <summary>A fixed Standard Webhooks secret: the receiver does not verify, the worker signs.</summary>
    internal const string SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// <summary>The worker's <c>lease</c>: a claim sets a lease's end to its start plus this, which dates the claim.</summary>
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(60);

    private static string WriteConfig(BenchReceiver receiver, DeliveryOptions options)
    {
        var path = Path.Combine(Path.GetTempPath(), $"triggerevents-bench-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, $"""
            subscriptions:
              - name: {Subscription}
                trigger: orders
                webhook:
                  url: {receiver.Url}
                  timeout: 10s
                  # Signed, as users run it: every request pays its HMAC.
                  signing_secret: {SigningSecret}
                max_in_flight: {options.Concurrency}
            worker:
              batch_size: {options.BatchSize}
              concurrency: {options.Concurrency}
              poll_interval: 1s
              lease: {Lease.TotalSeconds}s
              http_port: {Loopback.FreePort()}
            retention:
              delivered_events: forever
              attempts: forever
            """);
        return path;
    }

    private static int PortOf(string configPath) =>
        int.Parse(File.ReadLines(configPath).First(l => l.Contains("http_port:", StringComparison.Ordinal)).Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Requests/s the receiver answers under a plain HTTP load from this process, <paramref name="connections"/> requests at a time.</summary>
    private static async Task<double> MeasureCeilingAsync(BenchReceiver receiver, DeliveryOptions options, int connections, CancellationToken cancellationToken)
    {
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = connections });
        var body = new string('x', 400);
        long completed = 0;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        stop.CancelAfter(TimeSpan.FromSeconds(options.CeilingSeconds));
        var clock = Stopwatch.StartNew();
        var loops = Enumerable.Range(0, connections).Select(async _ =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var content = new StringContent(body);
                    using var response = await client.PostAsync(receiver.Url, content, stop.Token);
                    Interlocked.Increment(ref completed);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        });
        await Task.WhenAll(loops);
        receiver.TakeArrivals();
        return completed / clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// The drain rate of a backlog captured before the worker starts (its first seconds included:
    /// connections, JIT), then, by the same worker once idle, of a second backlog captured in
    /// one transaction (a bulk update, or a target back after an outage).
    /// </summary>
    private static async Task<(double FreshWorker, double RunningWorker)> MeasureDrainAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, string configPath, DeliveryOptions options, CancellationToken cancellationToken,
        string? executable = null)
    {
        await database.ExecuteAsync(InsertRows(options.Backlog), cancellationToken);
        receiver.TakeArrivals();
        if (options.Statements)
        {
            await StatementProfile.ResetAsync(database, cancellationToken);
        }

        await using var worker = await WorkerUnderTest.StartAsync(connectionString, configPath, PortOf(configPath), cancellationToken, executable: executable);
        var freshWorker = await DrainAsync("from the worker's readiness");
        if (options.Statements)
        {
            await StatementProfile.PrintAsync(database, "the drain", options.Backlog, cancellationToken);
        }

        var quiet = await WaitUntilQuietAsync(worker, cancellationToken);
        Console.WriteLine($"    the worker was idle {quiet.TotalSeconds:F1} s after the first drain (its CPU below 5 % of a core)");
        await database.ExecuteAsync(InsertRows(options.Backlog), cancellationToken);
        var runningWorker = await DrainAsync("from the commit");
        return (freshWorker, runningWorker);

        async Task<double> DrainAsync(string from)
        {
            var drain = await TimeDrainAsync(worker, database, receiver, options.Backlog, cancellationToken);
            Console.WriteLine($"    {drain.Requests:N0} requests for {options.Backlog:N0} events from {drain.First:HH:mm:ss.fff} to {drain.Last:HH:mm:ss.fff}; " +
                $"CPU {from} to the last arrival: {drain.Cpu.PerEvent(options.Backlog)} per event");
            return drain.Rate;
        }
    }

    /// <summary>One drain of <paramref name="events"/> already captured: its rate from the first to the last arrival, and the CPU each party spent from now.</summary>
    private static async Task<(double Rate, CpuSplit Cpu, int Requests, DateTimeOffset First, DateTimeOffset Last)> TimeDrainAsync(
        WorkerUnderTest worker, BenchDatabase database, BenchReceiver receiver, int events, CancellationToken cancellationToken)
    {
        var start = CpuSplit.Read(worker, database);
        await receiver.WaitForDistinctAsync(events, TimeSpan.FromMinutes(10), cancellationToken);
        var cpu = CpuSplit.Read(worker, database) - start;
        var arrivals = receiver.TakeArrivals();
        var first = arrivals.Min(a => a.At);
        var last = arrivals.Max(a => a.At);
        return (events / (last - first).TotalSeconds, cpu, arrivals.Count, first, last);
    }

    /// <summary>
    /// (a') The running worker drains a backlog while another session holds a snapshot open
    /// (REPEATABLE READ, as <c>pg_dump</c> or a long report does), and without, in alternating
    /// rounds: while it is open, no index entry of a delivery finished since can be removed or
    /// marked dead, and the claim's in-flight count walks every finished lease that has not yet
    /// run out. Returns the median ratio of the rounds with the snapshot to those without.
    /// </summary>
    private static async Task<double> MeasureBesideOpenSnapshotAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, string configPath, DeliveryOptions options, CancellationToken cancellationToken)
    {
        Console.WriteLine($"## (a') Drains of {options.Backlog:N0} events by a running worker, with and without another session holding a snapshot open");
        await using var worker = await WorkerUnderTest.StartAsync(connectionString, configPath, PortOf(configPath), cancellationToken);
        var rates = new Dictionary<bool, List<double>> { [false] = [], [true] = [] };
        foreach (var held in new[] { false, true, true, false })
        {
            await WaitUntilQuietAsync(worker, cancellationToken);
            receiver.TakeArrivals();
            await using var holder = held ? await database.DataSource.OpenConnectionAsync(cancellationToken) : null;
            await using var snapshot = holder is null ? null : await holder.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
            if (holder is not null)
            {
                // The snapshot is taken by the transaction's first statement.
                await using var read = new NpgsqlCommand("SELECT count(*) FROM trigger_events.subscriptions", holder, snapshot);
                await read.ExecuteScalarAsync(cancellationToken);
            }

            await database.ExecuteAsync(InsertRows(options.Backlog), cancellationToken);
            var drain = await TimeDrainAsync(worker, database, receiver, options.Backlog, cancellationToken);
            rates[held].Add(drain.Rate);
            Console.WriteLine($"    {(held ? "with a snapshot open   " : "without                ")} {drain.Rate,8:N0} events/s; CPU per event {drain.Cpu.PerEvent(options.Backlog)}");
        }

        var ratio = Statistics.Median(rates[true]) / Statistics.Median(rates[false]);
        Console.WriteLine($"    with over without, medians: {ratio:F2}x");
        return ratio;
    }

    /// <summary>
    /// Waits until the worker's CPU stays below 5 % of a core for a quarter of a second (at most
    /// ten seconds): after a fresh worker's first drain, the runtime is still recompiling hot
    /// methods in the background for a second or two, and a running worker is one past that.
    /// </summary>
    internal static async Task<TimeSpan> WaitUntilQuietAsync(WorkerUnderTest worker, CancellationToken cancellationToken)
    {
        var interval = TimeSpan.FromMilliseconds(250);
        var waited = Stopwatch.StartNew();
        var before = worker.Cpu;
        while (waited.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(interval, cancellationToken);
            var now = worker.Cpu;
            if (now - before < interval * 0.05)
            {
                break;
            }

            before = now;
        }

        return waited.Elapsed;
    }

    /// <summary>
    /// The single-row writers' pgbench script, in a temporary file the caller deletes. The
    /// writers are pgbench clients, in their own process: neither their work nor their pauses
    /// land in the process that receives and timestamps the deliveries.
    /// </summary>
    internal static async Task<string> WriteWriterScriptAsync(CancellationToken cancellationToken)
    {
        var script = Path.Combine(Path.GetTempPath(), $"triggerevents-bench-writer-{Guid.NewGuid():N}.sql");
        await File.WriteAllTextAsync(script, """
            \set customer_id random(1, 100000)
            INSERT INTO orders (customer_id, status, amount) VALUES (:customer_id, 'new', 10.00);
            """, cancellationToken);
        return script;
    }

    /// <summary>Latency figures of one run of the writers; <see cref="Split"/> says where the time went.</summary>
    private sealed record LatencyFigures(double Rate, double P50, double P99, double Max, int Count, string Split);

    /// <summary>
    /// One fresh worker: an unmeasured warm-up under the writers, then the writers as fast as
    /// they can, then paced to <see cref="DeliveryOptions.LatencyRate"/>; each measured run waits
    /// until all it wrote is delivered.
    /// </summary>
    private static async Task<(LatencyFigures FlatOut, LatencyFigures Paced)> MeasureLatencyAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, string configPath, DeliveryOptions options, CancellationToken cancellationToken,
        string? executable = null)
    {
        var script = await WriteWriterScriptAsync(cancellationToken);
        try
        {
            var pgbench = new Pgbench(database);
            await using var worker = await WorkerUnderTest.StartAsync(connectionString, configPath, PortOf(configPath), cancellationToken, executable: executable);
            receiver.TakeArrivals();
            if (options.LatencyWarmupSeconds > 0)
            {
                var warmup = await pgbench.RunAsync(script, options.Writers, options.LatencyWarmupSeconds, cancellationToken);
                await receiver.WaitForDistinctAsync((int)warmup.Transactions, TimeSpan.FromMinutes(5), cancellationToken);
                receiver.TakeArrivals();
            }

            var flatOut = await MeasureAsync(rate: null);
            var paced = await MeasureAsync(options.LatencyRate);
            return (flatOut, paced);

            async Task<LatencyFigures> MeasureAsync(int? rate)
            {
                var profiled = options.Statements && rate is not null;
                if (profiled)
                {
                    await StatementProfile.ResetAsync(database, cancellationToken);
                }

                var run = await pgbench.RunAsync(script, options.Writers, options.LatencySeconds, cancellationToken, rate);
                await receiver.WaitForDistinctAsync((int)run.Transactions, TimeSpan.FromMinutes(5), cancellationToken);
                if (profiled)
                {
                    await StatementProfile.PrintAsync(database, "the paced run", (int)run.Transactions, cancellationToken);
                }

                var arrivals = receiver.TakeArrivals();
                var latencies = arrivals.Select(a => a.LatencyMs).Order().ToArray();
                var split = await SplitLatencyAsync(database, arrivals, cancellationToken);
                return new LatencyFigures(run.TransactionsPerSecond, Statistics.Percentile(latencies, 50), Statistics.Percentile(latencies, 99), latencies[^1], latencies.Length, split);
            }
        }
        finally
        {
            File.Delete(script);
        }
    }

    /// <summary>
    /// Splits each event's latency at the start of its request (the attempt's <c>started_at</c>,
    /// by the worker's clock on this machine): before it, the commit, the wait for a claim and
    /// the claim; after it, the request until the receiver took it. With
    /// <c>--set track_commit_timestamp=on</c> the part before the request is split at the commit
    /// of the writer's transaction too.
    /// </summary>
    private static async Task<string> SplitLatencyAsync(BenchDatabase database, IReadOnlyList<BenchReceiver.Arrival> arrivals, CancellationToken cancellationToken)
    {
        var splits = new Dictionary<long, (double RequestStart, double? Commit, double FromClaim)>(arrivals.Count);
        await using (var command = database.DataSource.CreateCommand("""
            SELECT a.event_id, extract(epoch FROM a.started_at - e.captured_at)::float8 * 1000,
                   CASE WHEN current_setting('track_commit_timestamp')::bool
                        THEN extract(epoch FROM pg_xact_commit_timestamp(e.xmin) - e.captured_at)::float8 * 1000 END,
                   extract(epoch FROM a.started_at - (d.next_attempt_at - $2::interval))::float8 * 1000
            FROM trigger_events.attempt_history a JOIN trigger_events.event_log e ON e.id = a.event_id
            JOIN trigger_events.deliveries d ON d.subscription_id = a.subscription_id AND d.event_id = a.event_id
            WHERE a.event_id = ANY($1) AND a.attempt = 1 AND d.attempts = 1 AND d.status = 'delivered'
            """))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = arrivals.Select(a => a.EventId).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { Value = Lease });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                splits[reader.GetInt64(0)] = (reader.GetDouble(1), reader.IsDBNull(2) ? null : reader.GetDouble(2), reader.GetDouble(3));
            }
        }

        var split = new List<(double Before, double After, double? Commit, double FromClaim)>(arrivals.Count);
        foreach (var arrival in arrivals)
        {
            if (splits.TryGetValue(arrival.EventId, out var times))
            {
                split.Add((times.RequestStart, arrival.LatencyMs - times.RequestStart, times.Commit, times.FromClaim));
            }
        }

        if (split.Count == 0)
        {
            return "no recorded attempts to split the latency at";
        }

        var before = split.Select(s => s.Before).Order().ToArray();
        var after = split.Select(s => s.After).Order().ToArray();
        var text = $"capture to request start (commit, claim wait, claim): p50 {Statistics.Percentile(before, 50):F1} ms, p99 {Statistics.Percentile(before, 99):F1} ms; " +
            $"request start to receipt: p50 {Statistics.Percentile(after, 50):F1} ms, p99 {Statistics.Percentile(after, 99):F1} ms";
        if (split.All(s => s.Commit is not null))
        {
            var commit = split.Select(s => s.Commit!.Value).Order().ToArray();
            var claim = split.Select(s => s.Before - s.Commit!.Value).Order().ToArray();
            text += $"\n    capture to commit: p50 {Statistics.Percentile(commit, 50):F1} ms, p99 {Statistics.Percentile(commit, 99):F1} ms; " +
                $"commit to request start (claim wait, claim): p50 {Statistics.Percentile(claim, 50):F1} ms, p99 {Statistics.Percentile(claim, 99):F1} ms";
        }

        // The claim round that took the event began at its transaction's now(), which the claim
        // wrote as the lease's start; from there to the request: the round (its fan-out and
        // claim) and the worker's hand-over.
        var fromClaim = split.Select(s => s.FromClaim).Order().ToArray();
        text += $"\n    claim round's start to request start (fan-out, claim, the worker's hand-over): p50 {Statistics.Percentile(fromClaim, 50):F1} ms, p99 {Statistics.Percentile(fromClaim, 99):F1} ms";

        return text;
    }

    /// <summary>
    /// Captures <see cref="DeliveryOptions.MemoryEvents"/> events, then a fresh worker (with
    /// <paramref name="environment"/> added to its own) drains them: its peak memory, the overall
    /// rate, the rate of each tenth, and its CPU per event.
    /// </summary>
    internal static async Task<(double PeakMiB, double Rate, IReadOnlyList<double> SegmentRates, double WorkerCpuUs)> MeasureMemoryAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, string configPath, DeliveryOptions options, CancellationToken cancellationToken,
        IReadOnlyDictionary<string, string?>? environment = null)
    {
        const int chunk = 100_000;
        var clock = Stopwatch.StartNew();
        for (var inserted = 0; inserted < options.MemoryEvents; inserted += chunk)
        {
            await database.ExecuteAsync(InsertRows(Math.Min(chunk, options.MemoryEvents - inserted)), cancellationToken);
        }

        Console.WriteLine($"    captured {options.MemoryEvents:N0} events in {clock.Elapsed.TotalSeconds:F0} s; starting a fresh worker");
        receiver.TakeArrivals();
        await using var worker = await WorkerUnderTest.StartAsync(connectionString, configPath, PortOf(configPath), cancellationToken, environment);
        var cpuAtReady = CpuSplit.Read(worker, database);
        var segment = Math.Max(1, options.MemoryEvents / 10);
        var rates = new List<double>();
        var start = Stopwatch.StartNew();
        var segmentStart = TimeSpan.Zero;
        var next = segment;
        while (receiver.DistinctEvents < options.MemoryEvents)
        {
            await Task.Delay(200, cancellationToken);
            while (receiver.DistinctEvents >= next && next <= options.MemoryEvents)
            {
                rates.Add(segment / (start.Elapsed - segmentStart).TotalSeconds);
                segmentStart = start.Elapsed;
                next += segment;
            }

            if (start.Elapsed > TimeSpan.FromMinutes(30))
            {
                throw new TimeoutException($"Only {receiver.DistinctEvents:N0} of {options.MemoryEvents:N0} delivered in 30 minutes.");
            }
        }

        var total = start.Elapsed.TotalSeconds;
        var cpu = CpuSplit.Read(worker, database) - cpuAtReady;
        Console.WriteLine($"    CPU per event over the whole drain: {cpu.PerEvent(options.MemoryEvents)}");
        receiver.TakeArrivals();
        return (worker.PeakMemoryMiB, options.MemoryEvents / total, rates, cpu.Worker.TotalMicroseconds / options.MemoryEvents);
    }

    internal static string InsertRows(int count) =>
        $"INSERT INTO orders (customer_id, status, amount) SELECT 1 + g % 5000, 'new', (g % 100000) / 100.0 FROM generate_series(1, {count}) g";
}
