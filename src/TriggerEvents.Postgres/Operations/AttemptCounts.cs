using Npgsql;

namespace TriggerEvents.Postgres.Operations;

/// <summary>
/// The per-minute counts of attempts that each result write adds to (migration 000028), which
/// the rates of the console and of <c>subscriptions</c> read (<see cref="ConsoleQueries.RatesSql"/>).
/// </summary>
internal static class AttemptCounts
{
    /// <summary>How long the counts are kept: far longer than any rate's window.</summary>
    public static readonly TimeSpan Kept = TimeSpan.FromHours(1);

    /// <summary>How often a worker prunes them: every worker does, whatever its group, since the counts of a worker that stopped are left behind.</summary>
    public static readonly TimeSpan PruneInterval = TimeSpan.FromMinutes(1);

    private const string PruneSql = "DELETE FROM trigger_events.attempt_counts WHERE minute < now() - $1";

    /// <summary>Deletes the counts older than <see cref="Kept"/>; returns how many.</summary>
    public static async Task<int> PruneAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(PruneSql);
        command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = Kept });
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
