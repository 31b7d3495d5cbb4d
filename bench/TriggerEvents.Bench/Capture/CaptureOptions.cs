using System.Globalization;
using TriggerEvents.Bench.Infrastructure;
using TriggerEvents.LocalServer;

namespace TriggerEvents.Bench.Capture;

/// <summary>
/// Sizes of the capture benchmark. The defaults keep one run under about eight minutes:
/// 2 client counts x 6 configurations x (2 s warm-up + 5 x 5 s) of pgbench, plus the bulk inserts.
/// </summary>
internal sealed record CaptureOptions
{
    /// <summary>Rows inserted by the one bulk INSERT ... SELECT statement.</summary>
    public int BulkRows { get; init; } = 20_000;

    /// <summary>Bulk statements timed per table; the best is reported.</summary>
    public int BulkRepeats { get; init; } = 3;

    /// <summary>Concurrent pgbench clients, one thread each.</summary>
    public IReadOnlyList<int> Clients { get; init; } = [4, 16];

    /// <summary>Length of each measured pgbench run.</summary>
    public int Seconds { get; init; } = 5;

    /// <summary>Length of the unmeasured pgbench run per configuration and client count.</summary>
    public int WarmupSeconds { get; init; } = 2;

    /// <summary>Measured rounds (one run of every configuration each) per client count; medians are reported.</summary>
    public int Repeats { get; init; } = 5;

    /// <summary>
    /// Extra server settings (<c>name=value</c>), applied after LocalCluster's own, so
    /// <c>--set fsync=on --set synchronous_commit=on</c> measures a durable server.
    /// </summary>
    public IReadOnlyList<string> ServerSettings { get; init; } = [];

    public const string Usage =
        "capture [--seconds N] [--warmup N] [--repeats N] [--clients 4,16] [--rows N] [--set name=value]...";

    /// <summary>Reads <c>--name value</c> pairs over the defaults.</summary>
    public static CaptureOptions Parse(IReadOnlyList<string> args)
    {
        var options = new CaptureOptions();
        for (var i = 0; i < args.Count; i += 2)
        {
            var value = i + 1 < args.Count ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value. Usage: {Usage}");
            options = args[i] switch
            {
                "--seconds" => options with { Seconds = Int(value) },
                "--warmup" => options with { WarmupSeconds = Int(value) },
                "--repeats" => options with { Repeats = Int(value) },
                "--rows" => options with { BulkRows = Int(value) },
                "--clients" => options with { Clients = [.. value.Split(',').Select(Int)] },
                "--set" => options with { ServerSettings = [.. options.ServerSettings, ServerSetting.Parse(value)] },
                _ => throw new ArgumentException($"Unknown option {args[i]}. Usage: {Usage}"),
            };
        }

        options.Validate();
        return options;
    }

    public void Validate()
    {
        if (BulkRows < 1 || BulkRepeats < 1 || Seconds < 1 || WarmupSeconds < 0 || Repeats < 1 ||
            Clients.Count == 0 || Clients.Any(c => c < 1))
        {
            throw new ArgumentException($"Sizes must be positive (warm-up may be 0). Usage: {Usage}");
        }
    }

    private static int Int(string text) => int.Parse(text, NumberStyles.None, CultureInfo.InvariantCulture);
}
