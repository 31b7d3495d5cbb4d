using Npgsql;

namespace TriggerEvents.Postgres.Operations;

/// <summary>What <see cref="SubscriptionAdmin.DeleteAsync"/> removed with a subscription.</summary>
internal sealed record DeletedSubscription(long Undelivered, long Dead);

/// <summary>
/// The operator's side of a subscription's lifecycle (SPEC "Lifecycle"): pause, resume, delete.
/// Workers see a pause at their next claim: a paused subscription is neither fanned out nor
/// claimed, so its place in the log stays where it paused and nothing is lost.
/// </summary>
internal static class SubscriptionAdmin
{
    /// <summary>Pauses; false when there is no such subscription. A paused one gets the new reason.</summary>
    public static async Task<bool> PauseAsync(NpgsqlDataSource dataSource, string name, string? reason, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("""
            UPDATE trigger_events.subscriptions
            SET enabled = false, paused_by = 'operator', paused_reason = $2,
                paused_at = CASE WHEN enabled THEN now() ELSE paused_at END, updated_at = now()
            WHERE name = $1
            """);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = string.IsNullOrWhiteSpace(reason) ? "paused by an operator" : reason.Trim() });
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    /// <summary>
    /// Resumes a subscription an operator or its circuit breaker paused. One that left its
    /// group's file stays paused (<see cref="ResumeResult.NotInItsFile"/>): no worker would
    /// serve it; it is resumed by returning to the file. Resuming closes the circuit breaker
    /// (trigger <c>subscriptions_close_circuit</c>, migration 000007).
    /// </summary>
    public static async Task<ResumeResult> ResumeAsync(NpgsqlDataSource dataSource, string name, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("""
            WITH target AS (SELECT id, paused_by FROM trigger_events.subscriptions WHERE name = $1 FOR UPDATE),
            resumed AS (
                UPDATE trigger_events.subscriptions s
                SET enabled = true, paused_by = NULL, paused_reason = NULL, paused_at = NULL, updated_at = now()
                FROM target WHERE s.id = target.id AND target.paused_by IN ('operator', 'breaker')
                RETURNING 1
            )
            SELECT (SELECT paused_by FROM target), EXISTS (SELECT FROM target), EXISTS (SELECT FROM resumed)
            """);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return !reader.GetBoolean(1) ? ResumeResult.NoSuchSubscription
            : reader.GetBoolean(2) ? ResumeResult.Resumed
            : reader.IsDBNull(0) ? ResumeResult.AlreadyActive
            : ResumeResult.NotInItsFile;
    }

    /// <summary>Ends a subscription with its deliveries and place in the log; null when there is no such subscription.</summary>
    public static async Task<DeletedSubscription?> DeleteAsync(NpgsqlDataSource dataSource, string name, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT deleted, undelivered, dead FROM trigger_events.delete_subscription($1)");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return reader.GetBoolean(0) ? new DeletedSubscription(reader.GetInt64(1), reader.GetInt64(2)) : null;
    }
}

/// <summary>What <see cref="SubscriptionAdmin.ResumeAsync"/> found.</summary>
internal enum ResumeResult
{
    Resumed,
    AlreadyActive,
    NotInItsFile,
    NoSuchSubscription,
}
