using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// (d) A fresh TriggerEvents worker and a fresh graphile-worker draining the same backlog into
/// the same receiver, in rounds that alternate between them, so that both see the same machine.
/// </summary>
internal static class PeerDrainComparison
{
    public sealed record Figures(IReadOnlyList<double> Ours, IReadOnlyList<double> Peer, double MedianRatio);

    public static async Task<Figures> RunAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, string configPath, int httpPort, DeliveryOptions options, CancellationToken cancellationToken)
    {
        var peer = await GraphileWorkerPeer.InstallAsync(database, connectionString, options.GraphileJobs, cancellationToken);
        Console.WriteLine($"## (d) Side by side with graphile-worker: a fresh worker of each draining a {options.Backlog:N0}-event backlog, {options.PeerRounds} alternating rounds");
        Console.WriteLine($"    graphile-worker 0.17 (bench/graphile): a row trigger enqueues one job per row with graphile_worker.add_job; a Node task signs and POSTs it; {peer.Jobs} concurrent jobs");
        var ours = new List<double>();
        var theirs = new List<double>();
        for (var round = 1; round <= options.PeerRounds; round++)
        {
            await database.ExecuteAsync(DeliveryBenchmark.InsertRows(options.Backlog), cancellationToken);
            receiver.TakeArrivals();
            double rate;
            CpuSplit cpu;
            await using (var worker = await WorkerUnderTest.StartAsync(connectionString, configPath, httpPort, cancellationToken))
            {
                var start = CpuSplit.Read(worker, database);
                await receiver.WaitForDistinctAsync(options.Backlog, TimeSpan.FromMinutes(10), cancellationToken);
                cpu = CpuSplit.Read(worker, database) - start;
                var arrivals = receiver.TakeArrivals();
                rate = options.Backlog / (arrivals.Max(a => a.At) - arrivals.Min(a => a.At)).TotalSeconds;
            }

            var (peerRate, peerCpu) = await peer.DrainAsync(receiver, options.Backlog, cancellationToken);
            ours.Add(rate);
            theirs.Add(peerRate);
            Console.WriteLine($"    round {round}: TriggerEvents {rate:N0} events/s ({cpu.PerEvent(options.Backlog)}); " +
                $"graphile-worker {peerRate:N0} events/s ({peerCpu.PerEvent(options.Backlog).Replace("worker", "node", StringComparison.Ordinal)})");
        }

        var ratio = Statistics.Median([.. ours.Zip(theirs, (a, b) => a / b)]);
        Console.WriteLine($"    median of per-round ratios, TriggerEvents / graphile-worker: {ratio:F2}x");
        Console.WriteLine();
        return new Figures(ours, theirs, ratio);
    }
}
