using Dapper;
using Npgsql;

namespace TriggerEvents.Postgres.Operations;

/// <summary>One row of <c>trigger_events.subscription_status</c>.</summary>
internal sealed record SubscriptionStatus(
    string Subscription, string TriggerName, bool Enabled, long Pending, long Retrying, long InFlight, long Dead,
    DateTime? OldestPendingCapturedAt, double? OldestPendingAgeSeconds);

/// <summary>Read-only queries for operators: <c>status</c> and the backlog gauges.</summary>
internal static class StatusQueries
{
    public static async Task<IReadOnlyList<SubscriptionStatus>> GetSubscriptionStatusAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<SubscriptionStatus>(new CommandDefinition(
            """
            SELECT subscription, trigger_name AS TriggerName, enabled, pending, retrying, in_flight AS InFlight, dead,
                   oldest_pending_captured_at AS OldestPendingCapturedAt, oldest_pending_age_seconds AS OldestPendingAgeSeconds
            FROM trigger_events.subscription_status ORDER BY subscription
            """,
            cancellationToken: cancellationToken));
        return rows.AsList();
    }
}
