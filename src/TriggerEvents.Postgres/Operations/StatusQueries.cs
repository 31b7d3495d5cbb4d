using Dapper;
using Npgsql;

// Dapper.AOT generates the row mapping of this assembly's Dapper calls at build time.
[module: DapperAot]

namespace TriggerEvents.Postgres.Operations;

/// <summary>One row of <c>trigger_events.subscription_status</c>; State is active or paused, Circuit closed, open or half_open.</summary>
internal sealed record SubscriptionStatus(
    string Subscription, string TriggerName, bool Enabled, long Pending, long Retrying, long InFlight, long Dead,
    DateTime? OldestPendingCapturedAt, double? OldestPendingAgeSeconds, string Group, string State, string? PausedBy,
    string? PausedReason, DateTime? PausedAt, string Circuit);

/// <summary>Read-only queries for operators: <c>status</c> and the backlog gauges.</summary>
internal static class StatusQueries
{
    private const string Columns = """
        subscription, trigger_name AS TriggerName, enabled, pending, retrying, in_flight AS InFlight, dead,
        oldest_pending_captured_at AS OldestPendingCapturedAt, oldest_pending_age_seconds AS OldestPendingAgeSeconds,
        group_name AS "Group", state, paused_by AS PausedBy, paused_reason AS PausedReason, paused_at AS PausedAt,
        circuit
        """;

    /// <summary>Every subscription of the database, through the view a DBA may grant on its own.</summary>
    public static async Task<IReadOnlyList<SubscriptionStatus>> GetSubscriptionStatusAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // Dapper.AOT cannot read a CommandDefinition; a CancellationToken passed as the arguments
        // is its way to cancel, which its own analyzer takes for a parameter (DAP018).
#pragma warning disable DAP018
        var rows = await connection.QueryAsync<SubscriptionStatus>(
            $"SELECT {Columns} FROM trigger_events.subscription_status ORDER BY subscription",
            cancellationToken);
#pragma warning restore DAP018
        return [.. rows];
    }

    /// <summary>
    /// The subscriptions of one group. The view's own filter would count every group's backlog
    /// first (it reads through a function that PostgreSQL cannot inline), so the group is the
    /// function's argument (000025).
    /// </summary>
    public static async Task<IReadOnlyList<SubscriptionStatus>> GetSubscriptionStatusAsync(
        NpgsqlDataSource dataSource, string group, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // A CancellationToken member of the arguments is Dapper.AOT's way to cancel.
        var rows = await connection.QueryAsync<SubscriptionStatus>(
            $"SELECT {Columns} FROM trigger_events.subscription_status_rows(@group) ORDER BY subscription",
            new { group, cancellationToken });
        return [.. rows];
    }
}
