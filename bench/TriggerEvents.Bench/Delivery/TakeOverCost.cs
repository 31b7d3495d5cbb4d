using Npgsql;
using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// <c>delivery --take-over N</c>: how long the deliveries a killed worker left behind take once
/// their leases expire. Each round captures a backlog, starts a worker, kills it (SIGKILL) a
/// quarter of the way through, and starts another at once; the leases are 3 s. Printed: how many
/// deliveries the kill left in flight, and the time from the last of their leases' ends to the
/// last of them arriving again. With <c>--baseline REF</c>, rounds alternate with that build's
/// worker (which took every expired lease over in one claim and sent them side by side).
/// Leaves out: a receiver that answers slowly (each request alone then costs its whole round
/// trip), and events that kill the worker again.
/// </summary>
internal static class TakeOverCost
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(3);

    private sealed record Round(string Build, int Stranded, TimeSpan AfterExpiry);

    public static async Task RunAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, string configPath, DeliveryOptions options,
        (string Name, string Executable)? baseline, CancellationToken cancellationToken)
    {
        var shortLease = Path.Combine(Path.GetTempPath(), $"triggerevents-bench-takeover-{Guid.NewGuid():N}.yaml");
        var config = File.ReadAllText(configPath);
        var leaseLine = config.Split('\n').Single(l => l.TrimStart().StartsWith("lease:", StringComparison.Ordinal));
        // A request must fit in its lease: the webhook timeout goes down with it.
        await File.WriteAllTextAsync(
            shortLease,
            config.Replace(leaseLine, $"  lease: {Lease.TotalSeconds}s", StringComparison.Ordinal).Replace("timeout: 10s", "timeout: 2s", StringComparison.Ordinal),
            cancellationToken);
        var port = int.Parse(config.Split('\n').Single(l => l.Contains("http_port:", StringComparison.Ordinal)).Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        Console.WriteLine($"## Take-over after a kill: {options.TakeOverRounds} round(s) per build, {options.Backlog:N0} events, the worker killed a quarter of the way, leases {Lease.TotalSeconds:F0} s, webhook timeout 2 s");
        var builds = baseline is { } other ? new (string Name, string? Executable)[] { ("this checkout", null), (other.Name, other.Executable) } : [("this checkout", null)];
        var rounds = new List<Round>();
        try
        {
            for (var i = 0; i < options.TakeOverRounds; i++)
            {
                foreach (var (name, executable) in i % 2 == 0 ? builds : [.. builds.Reverse()])
                {
                    var round = await RunRoundAsync(name, executable);
                    rounds.Add(round);
                    Console.WriteLine($"    round {i + 1}, {name}: {round.Stranded:N0} left in flight; all of them arrived {round.AfterExpiry.TotalMilliseconds:N0} ms after the last lease ended " +
                        $"({round.AfterExpiry.TotalMicroseconds / Math.Max(1, round.Stranded):N0} µs each)");
                }
            }

            Console.WriteLine();
            Console.WriteLine("| build, median of rounds | left in flight | last arrival after the last lease ended | per delivery |");
            Console.WriteLine("| --- | ---: | ---: | ---: |");
            foreach (var (name, _) in builds)
            {
                var mine = rounds.Where(r => r.Build == name).ToList();
                Console.WriteLine($"| {name} | {Statistics.Median([.. mine.Select(r => (double)r.Stranded)]):N0} | {Statistics.Median([.. mine.Select(r => r.AfterExpiry.TotalMilliseconds)]):N0} ms " +
                    $"| {Statistics.Median([.. mine.Select(r => r.AfterExpiry.TotalMicroseconds / Math.Max(1, r.Stranded))]):N0} µs |");
            }

            Console.WriteLine();
        }
        finally
        {
            File.Delete(shortLease);
        }

        async Task<Round> RunRoundAsync(string name, string? executable)
        {
            await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered' WHERE status <> 'delivered'", cancellationToken);
            await database.ExecuteAsync(DeliveryBenchmark.InsertRows(options.Backlog), cancellationToken);
            receiver.TakeArrivals();
            var first = await WorkerUnderTest.StartAsync(connectionString, shortLease, port, cancellationToken, executable: executable);
            while (receiver.DistinctEvents < options.Backlog / 4)
            {
                await Task.Delay(1, cancellationToken);
            }

            await first.KillAsync();
            await first.DisposeAsync();
            var stranded = new List<long>();
            DateTimeOffset lastLeaseEnd;
            await using (var command = database.DataSource.CreateCommand(
                "SELECT event_id, next_attempt_at FROM trigger_events.deliveries WHERE status = 'in_flight'"))
            {
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                lastLeaseEnd = DateTimeOffset.MinValue;
                while (await reader.ReadAsync(cancellationToken))
                {
                    stranded.Add(reader.GetInt64(0));
                    var end = reader.GetFieldValue<DateTimeOffset>(1);
                    lastLeaseEnd = end > lastLeaseEnd ? end : lastLeaseEnd;
                }
            }

            receiver.TakeArrivals();
            await using var second = await WorkerUnderTest.StartAsync(connectionString, shortLease, port, cancellationToken, executable: executable);
            var left = stranded.ToHashSet();
            var lastArrival = DateTimeOffset.MinValue;
            var deadline = DateTimeOffset.UtcNow + TimeSpan.FromMinutes(5);
            while (left.Count > 0)
            {
                if (DateTimeOffset.UtcNow > deadline)
                {
                    throw new TimeoutException($"{left.Count} of the {stranded.Count} deliveries left in flight never arrived again");
                }

                await Task.Delay(10, cancellationToken);
                foreach (var arrival in receiver.TakeArrivals())
                {
                    if (left.Remove(arrival.EventId) && arrival.At > lastArrival)
                    {
                        lastArrival = arrival.At;
                    }
                }
            }

            // The rest of the backlog drained before the next round.
            await DeliveryBenchmark.WaitUntilQuietAsync(second, cancellationToken);
            return new Round(name, stranded.Count, lastArrival - lastLeaseEnd);
        }
    }
}
