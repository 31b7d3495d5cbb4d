using TriggerEvents.Bench.Capture;
using TriggerEvents.Bench.Delivery;
using TriggerEvents.Bench.Retention;

namespace TriggerEvents.Bench;

/// <summary>
/// Entry point: <c>TriggerEvents.Bench &lt;benchmark&gt; [options]</c>. Each benchmark is one
/// entry in <see cref="Benchmarks"/>; add a new one (e.g. <c>delivery</c>) there.
/// </summary>
internal static class Program
{
    private static readonly SortedDictionary<string, Func<string[], CancellationToken, Task<int>>> Benchmarks =
        new(StringComparer.Ordinal)
        {
            ["capture"] = CaptureBenchmark.RunAsync,
            ["delivery"] = DeliveryBenchmark.RunAsync,
            ["retention"] = RetentionBenchmark.RunAsync,
        };

    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || !Benchmarks.TryGetValue(args[0], out var run))
        {
            await Console.Error.WriteLineAsync($"usage: TriggerEvents.Bench <{string.Join('|', Benchmarks.Keys)}> [options]");
            return 2;
        }

        using var cancellation = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            // Stop cleanly so the throwaway cluster is shut down and deleted.
            e.Cancel = true;
            cancellation.Cancel();
        };

        try
        {
            return await run(args[1..], cancellation.Token);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("cancelled");
            return 130;
        }
    }
}
