using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace TriggerEvents.Bench.Infrastructure;

/// <summary>What one pgbench run reported.</summary>
internal sealed record PgbenchResult(double TransactionsPerSecond, long Transactions, double LatencyMs);

/// <summary>
/// Runs the server's own <c>pgbench</c> (from the same bin directory as <c>initdb</c>) with a
/// custom script against a benchmark database, and reads its summary lines.
/// </summary>
internal sealed partial class Pgbench(BenchDatabase database)
{
    private string Executable => Path.Combine(database.BinDirectory, "pgbench");

    /// <summary>
    /// <c>pgbench -n -f script -c clients -j clients -T seconds</c>: no vacuum of pgbench's own
    /// tables (there are none), one thread per client; with <paramref name="rate"/>, <c>-R</c>:
    /// that many transactions a second in all, on a Poisson schedule, instead of as many as fit.
    /// </summary>
    public async Task<PgbenchResult> RunAsync(string scriptPath, int clients, int seconds, CancellationToken cancellationToken, int? rate = null)
    {
        var start = new ProcessStartInfo(Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in new[]
        {
            "-n", "-f", scriptPath,
            "-c", Invariant(clients), "-j", Invariant(clients), "-T", Invariant(seconds),
            "-h", "127.0.0.1", "-p", Invariant(database.Port), "-U", "postgres", database.Name,
        })
        {
            start.ArgumentList.Add(argument);
        }

        if (rate is { } perSecond)
        {
            start.ArgumentList.Add("-R");
            start.ArgumentList.Add(Invariant(perSecond));
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {Executable}.");
        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            await process.WaitForExitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw;
        }

        // pgbench exits 2 when a client aborted (a failed statement): the figures would be wrong.
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"pgbench failed ({process.ExitCode}): {await error}{await output}");
        }

        return Parse(await output);
    }

    internal static PgbenchResult Parse(string output) => new(
        double.Parse(Match(TpsLine(), output), CultureInfo.InvariantCulture),
        long.Parse(Match(TransactionsLine(), output), CultureInfo.InvariantCulture),
        double.Parse(Match(LatencyLine(), output), CultureInfo.InvariantCulture));

    private static string Match(Regex pattern, string output)
    {
        var match = pattern.Match(output);
        return match.Success
            ? match.Groups[1].Value
            : throw new InvalidOperationException($"pgbench output has no line matching /{pattern}/:\n{output}");
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    // "tps = 1234.567890 (without initial connection time)": connection set-up is excluded.
    [GeneratedRegex(@"^tps = ([0-9.]+)", RegexOptions.Multiline)]
    private static partial Regex TpsLine();

    [GeneratedRegex(@"^number of transactions actually processed: ([0-9]+)", RegexOptions.Multiline)]
    private static partial Regex TransactionsLine();

    [GeneratedRegex(@"^latency average = ([0-9.]+) ms", RegexOptions.Multiline)]
    private static partial Regex LatencyLine();
}
