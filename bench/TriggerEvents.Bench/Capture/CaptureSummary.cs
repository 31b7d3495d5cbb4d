using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Capture;

/// <summary>
/// The final markdown table: every figure, its ratio to the plain table, and the goal from the
/// issue beside the rows it applies to. Goals are printed, never asserted.
/// </summary>
internal static class CaptureSummary
{
    // The goals: 20k rows within 6x plain; 4 clients at least 0.6x plain; 16 clients at
    // least 0.5x plain with the wake-up on.
    private const double BulkGoal = 6.0;
    private const double FourClientGoal = 0.6;
    private const double SixteenClientGoal = 0.5;

    public static void Write(
        TextWriter output, ServerInfo server, CaptureOptions options, BulkInsertResult bulk, IReadOnlyList<ThroughputResult> throughput)
    {
        output.WriteLine("## Capture benchmark summary");
        output.WriteLine();
        output.WriteLine($"PostgreSQL {server.Version.Split(' ')[1]}, fsync={server.Fsync}, synchronous_commit={server.SynchronousCommit}, " +
            $"{server.Cores} cores; pgbench {options.Seconds} s per run, median of {options.Repeats}; bulk best of {options.BulkRepeats}.");
        output.WriteLine();
        output.WriteLine("| Measure | Plain | Attached | Attached / plain | Goal | Goal met |");
        output.WriteLine("|---|---:|---:|---:|---|---|");
        output.WriteLine($"| {options.BulkRows:N0} rows, one INSERT ... SELECT (ms, best) | {bulk.BestPlainMs:F1} | {bulk.BestAttachedMs:F1} | {bulk.Ratio:F2}x " +
            $"| <= {BulkGoal:F1}x | {YesNo(bulk.Ratio <= BulkGoal)} |");

        foreach (var group in throughput.GroupBy(r => r.Clients))
        {
            var plain = group.Single(r => r.Mode == CaptureMode.Plain).Median;
            foreach (var result in group.Where(r => r.Mode.IsAttached))
            {
                var ratio = result.Median / plain;
                var goal = GoalFor(group.Key, result.Mode);
                var goalText = goal is { } g ? $">= {g:F1}x" : "-";
                var met = goal is { } minimum ? YesNo(ratio >= minimum) : "-";
                output.WriteLine($"| {group.Key} clients, {result.Mode.Label} (tx/s, median) | {plain:F0} | {result.Median:F0} | {ratio:F2}x | {goalText} | {met} |");
            }
        }
    }

    /// <summary>
    /// The 4-client goal has no condition, so it applies to every attached configuration; the
    /// 16-client goal is stated "with wake-up on", so it applies to the two notify-on rows.
    /// </summary>
    private static double? GoalFor(int clients, CaptureMode mode) => clients switch
    {
        4 => FourClientGoal,
        16 when mode.Notify == true => SixteenClientGoal,
        _ => null,
    };

    private static string YesNo(bool value) => value ? "yes" : "no";
}
