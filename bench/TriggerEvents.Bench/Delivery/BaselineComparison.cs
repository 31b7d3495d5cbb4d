using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// <c>delivery --baseline REF</c>: this checkout's worker against the worker built from git
/// <c>REF</c>, in rounds that alternate between the two (this/REF, then REF/this) on one database
/// and one receiver, in place of the other phases. A round of each is the drain (a), a fresh
/// worker then the same worker running, and the latency phase (b). A change is then judged by
/// ratios taken on the same machine minutes apart, not against the figures of another run, which
/// drift by a third on this kind of machine. REF must have the same migrations as this checkout
/// (the newer worker migrates the database first).
/// </summary>
internal static class BaselineComparison
{
    /// <summary>Publishes the worker of <paramref name="gitRef"/> as the benchmark publishes its own, from a temporary worktree.</summary>
    public static async Task<string> PublishAsync(string gitRef, CancellationToken cancellationToken)
    {
        var root = WorkerUnderTest.RepositoryRoot();
        var output = Path.Combine(root, "artifacts", "bench-baseline");
        var source = Path.Combine(output, "source");
        await ProgramRun.ToEndAsync("git", ["worktree", "prune"], root, [], cancellationToken);
        if (Directory.Exists(source))
        {
            Directory.Delete(source, recursive: true);
            await ProgramRun.ToEndAsync("git", ["worktree", "prune"], root, [], cancellationToken);
        }

        await ProgramRun.ToEndAsync("git", ["worktree", "add", "--detach", source, gitRef], root, [], cancellationToken);
        try
        {
            await ProgramRun.ToEndAsync(Path.Combine(source, "scripts", "publish.sh"), [Path.Combine(output, "bin")], source, [], cancellationToken);
        }
        finally
        {
            await ProgramRun.ToEndAsync("git", ["worktree", "remove", "--force", source], root, [], cancellationToken);
        }

        return Path.Combine(output, "bin", "triggerevents");
    }

    /// <summary>One build's figures in one round.</summary>
    public sealed record Round(string Build, double Fresh, double Running, double PacedP50, double PacedP99);

    /// <summary>Runs <paramref name="rounds"/> rounds of each build, alternating; <paramref name="measure"/> measures one build's worker.</summary>
    public static async Task RunAsync(
        string gitRef, string baseline, int rounds, Func<string?, Task<Round>> measure, CancellationToken cancellationToken)
    {
        Console.WriteLine($"## This checkout against {gitRef}: {rounds} round(s) of each, alternating (this/{gitRef}, then {gitRef}/this)");
        Console.WriteLine($"    {gitRef}: {baseline}");
        Console.WriteLine();
        var results = new List<Round>();
        for (var i = 0; i < rounds; i++)
        {
            foreach (var executable in i % 2 == 0 ? new[] { null, baseline } : [baseline, null])
            {
                cancellationToken.ThrowIfCancellationRequested();
                Console.WriteLine($"### round {i + 1}, {(executable is null ? "this checkout" : gitRef)}");
                var round = await measure(executable) with { Build = executable is null ? "this checkout" : gitRef };
                results.Add(round);
                Console.WriteLine();
            }
        }

        Console.WriteLine($"| build, median of {rounds} rounds | fresh drain events/s | running drain events/s | paced p50 / p99 ms |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (var build in new[] { "this checkout", gitRef })
        {
            var mine = results.Where(r => r.Build == build).ToList();
            Console.WriteLine($"| {build} | {Statistics.Median([.. mine.Select(r => r.Fresh)]):N0} | {Statistics.Median([.. mine.Select(r => r.Running)]):N0} " +
                $"| {Statistics.Median([.. mine.Select(r => r.PacedP50)]):F1} / {Statistics.Median([.. mine.Select(r => r.PacedP99)]):F1} |");
        }

        // Rounds pair up in the order they ran: round i of this checkout with round i of the baseline.
        var ours = results.Where(r => r.Build == "this checkout").ToList();
        var theirs = results.Where(r => r.Build != "this checkout").ToList();
        double RatioOf(Func<Round, double> figure) => Statistics.Median([.. ours.Zip(theirs, (a, b) => figure(a) / figure(b))]);
        Console.WriteLine();
        Console.WriteLine($"median of per-round ratios, this checkout / {gitRef}: fresh drain {RatioOf(r => r.Fresh):F2}x, running drain {RatioOf(r => r.Running):F2}x, " +
            $"paced p50 {RatioOf(r => r.PacedP50):F2}x, paced p99 {RatioOf(r => r.PacedP99):F2}x");
        Console.WriteLine();
    }
}
