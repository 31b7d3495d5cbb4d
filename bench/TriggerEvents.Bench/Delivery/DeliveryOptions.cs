using System.Globalization;
using TriggerEvents.Bench.Infrastructure;
using TriggerEvents.LocalServer;

namespace TriggerEvents.Bench.Delivery;

/// <summary>Sizes of the delivery benchmark and the worker settings it runs with.</summary>
internal sealed record DeliveryOptions
{
    /// <summary>Events in the backlog whose drain rate is measured.</summary>
    public int Backlog { get; init; } = 20_000;

    /// <summary>Events in the large backlog whose drain is watched for memory and a flat claim cost.</summary>
    public int MemoryEvents { get; init; } = 1_000_000;

    /// <summary>How long the single-row writers run in the latency phase.</summary>
    public int LatencySeconds { get; init; } = 15;

    /// <summary>
    /// How long the same writers run, unmeasured, before the latency phase, after which the
    /// benchmark waits until all is delivered: the figures are of a running worker, not of its
    /// first seconds (tiered JIT, connection pools).
    /// </summary>
    public int LatencyWarmupSeconds { get; init; } = 10;

    /// <summary>
    /// The total rate of the paced run of the latency phase, events/s: a little above the goal's
    /// 2,000, because pgbench's paced schedule lands a few events a second short of its target
    /// (1,988 and 1,989 for a target of 2,000 in two runs).
    /// </summary>
    public int LatencyRate { get; init; } = 2_100;

    /// <summary>Concurrent single-row writers in the latency phase.</summary>
    public int Writers { get; init; } = 4;

    /// <summary><c>worker.batch_size</c>.</summary>
    public int BatchSize { get; init; } = 100;

    /// <summary><c>worker.concurrency</c>, and the subscription's <c>max_in_flight</c>.</summary>
    public int Concurrency { get; init; } = 256;

    /// <summary>Length of the plain HTTP load that measures the receiver's own ceiling.</summary>
    public int CeilingSeconds { get; init; } = 5;

    /// <summary>
    /// With N &gt; 0, the run measures only what tracing costs (<see cref="TracingCost"/>): N rounds
    /// each of a drain with tracing off and on, alternating, instead of (a), (b) and (c).
    /// </summary>
    public int TracingRounds { get; init; }

    /// <summary>Rounds each of a drain without and with a console open (<see cref="ConsoleCost"/>), in place of the phases; 0: none.</summary>
    public int ConsoleRounds { get; init; }

    /// <summary>Rounds of a worker killed mid-drain and the deliveries it left taken over (<see cref="TakeOverCost"/>), in place of the phases; 0: none.</summary>
    public int TakeOverRounds { get; init; }

    /// <summary>Extra server settings (<c>name=value</c>), applied after LocalCluster's own.</summary>
    public IReadOnlyList<string> ServerSettings { get; init; } = [];

    /// <summary>Environment variables (<c>NAME=VALUE</c>) for every worker the benchmark starts, and for no other process.</summary>
    public IReadOnlyDictionary<string, string> WorkerEnvironment { get; init; } = new Dictionary<string, string>();

    /// <summary>Alternating rounds of fresh drains beside graphile-worker; 0 leaves the peer out.</summary>
    public int PeerRounds { get; init; } = 3;

    /// <summary>Which of the batched and ordered drains (e) to run; empty: none.</summary>
    public IReadOnlyList<string> ShapedDrains { get; init; } = Delivery.ShapedDrains.Names;

    /// <summary>Print the server's time by statement over the fresh drain and the paced run (<see cref="StatementProfile"/>).</summary>
    public bool Statements { get; init; }

    /// <summary>A git ref whose worker this checkout's is measured against (<see cref="BaselineComparison"/>), in place of the phases; null: none.</summary>
    public string? Baseline { get; init; }

    /// <summary>Rounds of each build with <see cref="Baseline"/>.</summary>
    public int BaselineRounds { get; init; } = 3;

    /// <summary>
    /// Worker environments (<c>NAME=VALUE</c>, one variable each) whose large drain is measured
    /// against the worker as shipped (<see cref="MemoryVariants"/>), in place of the phases; empty: none.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, string>> MemoryVariants { get; init; } = [];

    /// <summary>Rounds of each of <see cref="MemoryVariants"/> and the worker as shipped.</summary>
    public int MemoryRounds { get; init; } = 3;

    /// <summary>graphile-worker's concurrent jobs in the peer rounds.</summary>
    public int GraphileJobs { get; init; } = 32;

    public const string Usage =
        "delivery [--backlog N] [--memory-events N] [--latency-seconds N] [--latency-warmup N] [--latency-rate N] [--writers N] [--batch-size N] [--concurrency N] [--peer-rounds N] [--graphile-jobs N] [--shaped-drains all|none|NAME,...] [--tracing N] [--console N] [--take-over N] [--baseline GIT-REF] [--baseline-rounds N] [--memory-variant NAME=VALUE]... [--memory-rounds N] [--statements] [--set name=value]... [--worker-env NAME=VALUE]...";

    public static DeliveryOptions Parse(IReadOnlyList<string> args)
    {
        var options = new DeliveryOptions();
        for (var i = 0; i < args.Count; i += 2)
        {
            if (args[i] == "--statements")
            {
                // The one option without a value.
                options = options with { Statements = true };
                i--;
                continue;
            }

            var value = i + 1 < args.Count ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value. Usage: {Usage}");
            options = args[i] switch
            {
                "--backlog" => options with { Backlog = Int(value) },
                "--memory-events" => options with { MemoryEvents = Int(value) },
                "--latency-seconds" => options with { LatencySeconds = Int(value) },
                "--latency-warmup" => options with { LatencyWarmupSeconds = Int(value) },
                "--latency-rate" => options with { LatencyRate = Int(value) },
                "--writers" => options with { Writers = Int(value) },
                "--batch-size" => options with { BatchSize = Int(value) },
                "--concurrency" => options with { Concurrency = Int(value) },
                "--peer-rounds" => options with { PeerRounds = Int(value) },
                "--shaped-drains" => options with { ShapedDrains = ParseShapedDrains(value) },
                "--graphile-jobs" => options with { GraphileJobs = Int(value) },
                "--tracing" => options with { TracingRounds = Int(value) },
                "--console" => options with { ConsoleRounds = Int(value) },
                "--take-over" => options with { TakeOverRounds = Int(value) },
                "--baseline" => options with { Baseline = value },
                "--baseline-rounds" => options with { BaselineRounds = Int(value) },
                "--set" => options with { ServerSettings = [.. options.ServerSettings, ServerSetting.Parse(value)] },
                "--worker-env" => options with { WorkerEnvironment = WithVariable(options.WorkerEnvironment, value) },
                "--memory-variant" => options with { MemoryVariants = [.. options.MemoryVariants, Variable("--memory-variant", value)] },
                "--memory-rounds" => options with { MemoryRounds = Int(value) },
                _ => throw new ArgumentException($"Unknown option {args[i]}. Usage: {Usage}"),
            };
        }

        if (options.Backlog < 1 || options.MemoryEvents < 1 || options.Writers < 1 || options.BatchSize < 1 || options.Concurrency < 1 ||
            options.LatencySeconds < 1 || options.LatencyRate < 1 || options.LatencyWarmupSeconds < 0 || options.PeerRounds < 0 || options.GraphileJobs < 1 || options.TracingRounds < 0 || options.ConsoleRounds < 0 || options.TakeOverRounds < 0 || options.BaselineRounds < 1 || options.MemoryRounds < 1)
        {
            throw new ArgumentException($"Sizes must be positive (the warm-up and the rounds may be 0). Usage: {Usage}");
        }

        if (options.Statements && (options.TracingRounds > 0 || options.ConsoleRounds > 0 || options.Baseline is not null || options.MemoryVariants.Count > 0))
        {
            throw new ArgumentException($"--statements profiles the drain (a), which --tracing, --console, --baseline and --memory-variant replace. Usage: {Usage}");
        }

        if (options.MemoryVariants.Count > 0 && (options.TracingRounds > 0 || options.ConsoleRounds > 0 || options.Baseline is not null))
        {
            throw new ArgumentException($"--memory-variant compares large drains; run --tracing, --console and --baseline apart. Usage: {Usage}");
        }

        if (options.Baseline is not null && (options.TracingRounds > 0 || options.ConsoleRounds > 0))
        {
            throw new ArgumentException($"--baseline compares whole workers; run --tracing and --console apart. Usage: {Usage}");
        }

        return options;
    }

    private static IReadOnlyList<string> ParseShapedDrains(string value)
    {
        if (value == "all")
        {
            return Delivery.ShapedDrains.Names;
        }

        var names = value == "none" ? [] : value.Split(',');
        return names.FirstOrDefault(n => !Delivery.ShapedDrains.Names.Contains(n)) is { } unknown
            ? throw new ArgumentException($"--shaped-drains takes all, none or some of {string.Join(',', Delivery.ShapedDrains.Names)}, not '{unknown}'. Usage: {Usage}")
            : names;
    }

    private static int Int(string value) => int.Parse(value, NumberStyles.None, CultureInfo.InvariantCulture);

    private static Dictionary<string, string> WithVariable(IReadOnlyDictionary<string, string> variables, string assignment)
    {
        var (name, value) = Variable("--worker-env", assignment);
        return new Dictionary<string, string>(variables) { [name] = value };
    }

    private static KeyValuePair<string, string> Variable(string option, string assignment)
    {
        var equals = assignment.IndexOf('=', StringComparison.Ordinal);
        return equals < 1
            ? throw new ArgumentException($"{option} takes NAME=VALUE, not '{assignment}'. Usage: {Usage}")
            : new(assignment[..equals], assignment[(equals + 1)..]);
    }
}
