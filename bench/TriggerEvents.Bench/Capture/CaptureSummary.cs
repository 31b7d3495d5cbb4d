using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Capture;

/// <summary>
/// The final markdown table: every figure, its ratio to the plain table (median of the per-round
/// ratios), and the goal beside the rows it applies to. Goals are printed, never asserted.
/// </summary>
internal static class CaptureSummary
{
    // The one-row capture issue's goals: 20k rows within 3x plain; single-row capture at least
    // 0.6x plain at 4 clients and 0.55x at 16, with one and with ten subscriptions and a busy
    // worker; the idle worker's NOTIFY at least 0.45x at 16 clients.
    private const double BulkGoal = 3.0;
    private const double FourClientGoal = 0.6;
    private const double SixteenClientGoal = 0.55;
    private const double IdleNotifyGoal = 0.45;

    public static void Write(
        TextWriter output, ServerInfo server, CaptureOptions options, BulkInsertResult bulk, IReadOnlyList<ThroughputResult> throughput)
    {
        output.WriteLine("## Capture benchmark summary");
        output.WriteLine();
        output.WriteLine($"PostgreSQL {server.Version.Split(' ')[1]}, fsync={server.Fsync}, synchronous_commit={server.SynchronousCommit}, " +
            $"{server.Cores} cores; pgbench {options.Seconds} s per run, {options.Repeats} alternating rounds, ratio = median of per-round ratios; bulk best of {options.BulkRepeats}.");
        output.WriteLine();
        output.WriteLine("| Measure | Plain | Configuration | Ratio to plain | Goal | Goal met |");
        output.WriteLine("|---|---:|---:|---:|---|---|");
        output.WriteLine($"| {options.BulkRows:N0} rows, one INSERT ... SELECT, TriggerEvents (ms, best) | {bulk.BestPlainMs:F1} | {bulk.BestAttachedMs:F1} | {bulk.Ratio:F2}x " +
            $"| <= {BulkGoal:F1}x | {YesNo(bulk.Ratio <= BulkGoal)} |");
        output.WriteLine($"| {options.BulkRows:N0} rows, one INSERT ... SELECT, Hasura-shaped (ms, best) | {bulk.BestPlainMs:F1} | {bulk.BestPeerMs:F1} | {bulk.PeerRatio:F2}x | - | - |");

        foreach (var group in throughput.GroupBy(r => r.Clients))
        {
            var plain = group.Single(r => r.Mode == CaptureMode.Plain).Median;
            foreach (var result in group.Where(r => r.Mode != CaptureMode.Plain))
            {
                var ratio = result.MedianRatio;
                var goal = GoalFor(group.Key, result.Mode);
                var goalText = goal is { } g ? $">= {g:F2}x" : "-";
                var met = goal is { } minimum ? YesNo(ratio >= minimum) : "-";
                output.WriteLine($"| {group.Key} clients, {result.Mode.Label} (tx/s, median) | {plain:F0} | {result.Median:F0} | {ratio:F2}x | {goalText} | {met} |");
            }
        }
    }

    /// <summary>Which goal applies to a configuration at a client count, if any.</summary>
    private static double? GoalFor(int clients, CaptureMode mode)
    {
        if (mode == CaptureMode.NotifyWorkerBusy || mode == CaptureMode.TenSubscriptionsWorkerBusy)
        {
            return clients switch
            {
                4 => FourClientGoal,
                16 => SixteenClientGoal,
                _ => null,
            };
        }

        return mode == CaptureMode.NotifyWorkerIdle && clients == 16 ? IdleNotifyGoal : null;
    }

    private static string YesNo(bool value) => value ? "yes" : "no";
}
