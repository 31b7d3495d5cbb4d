using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// <c>delivery --memory-variant NAME=VALUE</c>: the large drain of (c) by the worker as shipped
/// and by the same worker with one environment variable set (a GC setting, say), in alternating
/// rounds (the order turns each round, so no variant always runs first). Each round captures a
/// fresh backlog of <see cref="DeliveryOptions.MemoryEvents"/> events and starts a fresh worker;
/// the peak memory, the rate and the worker's CPU per event of each, and the medians per variant.
/// </summary>
internal static class MemoryVariants
{
    private sealed record Round(string Variant, double PeakMiB, double Rate, double WorkerCpuUs);

    public static async Task RunAsync(
        BenchDatabase database, BenchReceiver receiver, string connectionString, string configPath, DeliveryOptions options, CancellationToken cancellationToken)
    {
        var variants = new List<(string Name, IReadOnlyDictionary<string, string?>? Environment)> { ("as shipped", null) };
        variants.AddRange(options.MemoryVariants.Select(v =>
            ($"{v.Key}={v.Value}", (IReadOnlyDictionary<string, string?>?)new Dictionary<string, string?> { [v.Key] = v.Value })));
        Console.WriteLine($"## Memory by variant: {options.MemoryRounds} round(s) of {variants.Count} variants, each a fresh worker draining {options.MemoryEvents:N0} events " +
            "captured before it started; the order turns each round");
        Console.WriteLine();

        var rounds = new List<Round>();
        for (var i = 0; i < options.MemoryRounds; i++)
        {
            foreach (var (name, environment) in variants.Skip(i % variants.Count).Concat(variants.Take(i % variants.Count)))
            {
                var (peakMiB, rate, _, workerCpuUs) = await DeliveryBenchmark.MeasureMemoryAsync(
                    database, receiver, connectionString, configPath, options, cancellationToken, environment);
                rounds.Add(new Round(name, peakMiB, rate, workerCpuUs));
                Console.WriteLine($"    round {i + 1}, {name}: peak {peakMiB:F0} MiB, {rate:N0} events/s, worker {workerCpuUs:N0} µs/event");
            }
        }

        Console.WriteLine();
        Console.WriteLine("| variant, median of rounds | peak worker memory (VmHWM) | events/s | worker µs/event |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (var (name, _) in variants)
        {
            var mine = rounds.Where(r => r.Variant == name).ToList();
            Console.WriteLine($"| {name} | {Statistics.Median([.. mine.Select(r => r.PeakMiB)]):F0} MiB | {Statistics.Median([.. mine.Select(r => r.Rate)]):N0} " +
                $"| {Statistics.Median([.. mine.Select(r => r.WorkerCpuUs)]):N0} |");
        }

        Console.WriteLine();
    }
}
