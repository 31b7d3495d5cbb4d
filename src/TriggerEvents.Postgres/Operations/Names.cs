using Npgsql;

namespace TriggerEvents.Postgres.Operations;

/// <summary>Whether a name an operator typed exists, so every command can refuse an unknown one alike.</summary>
internal static class Names
{
    public static Task<bool> SubscriptionExistsAsync(NpgsqlDataSource dataSource, string name, CancellationToken cancellationToken) =>
        ExistsAsync(dataSource, "SELECT EXISTS (SELECT 1 FROM trigger_events.subscriptions WHERE name = $1)", name, cancellationToken);

    public static Task<bool> TriggerExistsAsync(NpgsqlDataSource dataSource, string name, CancellationToken cancellationToken) =>
        ExistsAsync(dataSource, "SELECT EXISTS (SELECT 1 FROM trigger_events.triggers WHERE name = $1)", name, cancellationToken);

    /// <summary>
    /// Attached now, or named by a subscription: a detached trigger's captured events stay and
    /// can still be replayed. (The log itself has no index by trigger to ask cheaply.)
    /// </summary>
    public static Task<bool> TriggerKnownAsync(NpgsqlDataSource dataSource, string name, CancellationToken cancellationToken) =>
        ExistsAsync(
            dataSource,
            "SELECT EXISTS (SELECT 1 FROM trigger_events.triggers WHERE name = $1) OR EXISTS (SELECT 1 FROM trigger_events.subscriptions WHERE trigger_name = $1)",
            name,
            cancellationToken);

    private static async Task<bool> ExistsAsync(NpgsqlDataSource dataSource, string sql, string name, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(sql);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        return (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
