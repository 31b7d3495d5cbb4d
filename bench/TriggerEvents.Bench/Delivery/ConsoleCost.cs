using TriggerEvents.Bench.Infrastructure;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// <c>delivery --console N</c>: whether an open console slows a drain. Rounds alternate a worker
/// without a console and one serving it (<c>worker.console_port</c>) while two browser tabs are
/// open on it: the overview and the subscription's deliveries page, each refreshing every two
/// seconds as the pages do (the same API requests, sent from the benchmark process). Each round
/// is a fresh worker draining a backlog; events/s, and worker and server CPU per event.
/// </summary>
internal static class ConsoleCost
{
    private static readonly TimeSpan Refresh = TimeSpan.FromSeconds(2);

    private sealed record Round(bool Open, double Rate, CpuSplit Cpu, int ConsoleRequests);

    public static async Task RunAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, string configPath, int port, DeliveryOptions options, CancellationToken cancellationToken)
    {
        var consolePort = Loopback.FreePort();
        var withConsole = Path.Combine(Path.GetTempPath(), $"triggerevents-bench-console-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(withConsole, File.ReadAllText(configPath).Replace("worker:\n", $"worker:\n  console_port: {consolePort}\n", StringComparison.Ordinal), cancellationToken);
        Console.WriteLine($"## Console cost: {options.ConsoleRounds} round(s) each without and with a console open, alternating, a fresh worker draining {options.Backlog:N0} events");
        Console.WriteLine($"    open: worker.console_port {consolePort}; the overview and {DeliveryBenchmark.Subscription}'s deliveries page refreshed every {Refresh.TotalSeconds:F0} s (their API requests)");
        try
        {
            var rounds = new List<Round>();
            for (var i = 0; i < options.ConsoleRounds; i++)
            {
                foreach (var open in i % 2 == 0 ? new[] { false, true } : [true, false])
                {
                    var round = await RunRoundAsync(open);
                    rounds.Add(round);
                    Console.WriteLine($"    round {i + 1}, console {(open ? "open  " : "closed")}: {round.Rate:N0} events/s; {round.Cpu.PerEvent(options.Backlog)}" +
                        (open ? $"; {round.ConsoleRequests} console requests answered" : ""));
                }
            }

            Console.WriteLine();
            Console.WriteLine("| console, median of rounds | drain events/s | worker µs/event | PostgreSQL µs/event |");
            Console.WriteLine("| --- | ---: | ---: | ---: |");
            foreach (var open in new[] { false, true })
            {
                var mode = rounds.Where(r => r.Open == open).ToList();
                Console.WriteLine($"| {(open ? "open, refreshing" : "none")} | {Statistics.Median([.. mode.Select(r => r.Rate)]):N0} " +
                    $"| {Statistics.Median([.. mode.Select(r => r.Cpu.Worker.TotalMicroseconds / options.Backlog)]):N0} " +
                    $"| {Statistics.Median([.. mode.Select(r => r.Cpu.Server.TotalMicroseconds / options.Backlog)]):N0} |");
            }

            Console.WriteLine();
        }
        finally
        {
            File.Delete(withConsole);
        }

        async Task<Round> RunRoundAsync(bool open)
        {
            await database.ExecuteAsync(DeliveryBenchmark.InsertRows(options.Backlog), cancellationToken);
            receiver.TakeArrivals();
            await using var worker = await WorkerUnderTest.StartAsync(connectionString, open ? withConsole : configPath, port, cancellationToken);
            using var stopPages = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var pages = open ? RefreshPagesAsync(consolePort, stopPages.Token) : Task.FromResult(0);
            var start = CpuSplit.Read(worker, database);
            await receiver.WaitForDistinctAsync(options.Backlog, TimeSpan.FromMinutes(10), cancellationToken);
            var cpu = CpuSplit.Read(worker, database) - start;
            await stopPages.CancelAsync();
            var answered = await pages;
            var arrivals = receiver.TakeArrivals();
            return new Round(open, options.Backlog / (arrivals.Max(a => a.At) - arrivals.Min(a => a.At)).TotalSeconds, cpu, answered);
        }
    }

    /// <summary>Two open pages, refreshing until <paramref name="stop"/>; the number of its requests answered 200.</summary>
    private static async Task<int> RefreshPagesAsync(int consolePort, CancellationToken stop)
    {
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{consolePort}/"), Timeout = TimeSpan.FromSeconds(10) };
        string[] requests = ["api/overview", $"api/subscriptions/{DeliveryBenchmark.Subscription}/deliveries?status=pending", "api/overview"];
        var answered = 0;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                foreach (var request in requests)
                {
                    using var response = await client.GetAsync(new Uri(request, UriKind.Relative), stop);
                    answered += response.IsSuccessStatusCode ? 1 : 0;
                }

                await Task.Delay(Refresh, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            catch (HttpRequestException)
            {
                // The console is not listening yet: the worker is still starting.
                await Task.Delay(100, CancellationToken.None);
            }
        }

        return answered;
    }
}
