using System.Data.Common;
using Npgsql;

namespace TriggerEvents.Postgres.Delivery;

/// <summary>
/// Connection settings for <c>triggerevents run</c>, on top of what the operator's
/// TRIGGER_EVENTS_DATABASE_URL says.
/// </summary>
/// <remarks>
/// The claim and the result write run thousands of times a second with the same text. Parsing and
/// planning them each time was a third of the database's work, so they are prepared once per
/// connection (Npgsql's automatic preparation; their plans are pinned, see DeliveryStore). The
/// worker sets no session state, so the reset on every return to the pool (DISCARD ALL, a round
/// trip per claim) is skipped. An operator whose pooler cannot hold prepared statements (PgBouncer
/// in transaction mode before 1.21, or without <c>max_prepared_statements</c>) sets
/// <c>Max Auto Prepare=0</c> in the URL; a value given there always wins.
/// </remarks>
internal static class WorkerConnection
{
    /// <summary>Statements kept prepared per connection: the hot path has fewer than ten.</summary>
    public const int MaxAutoPrepare = 16;

    /// <summary>
    /// Refuses (<see cref="IsolationException"/>) a database whose sessions for this role start
    /// their transactions at another level than READ COMMITTED (<c>default_transaction_isolation</c>
    /// set on the role or the database). The claim, the hand-off, retention and replay rely on each
    /// statement of a transaction seeing what committed before it started, after a lock it
    /// waited for: at REPEATABLE READ a claim that waited for another replica's lock fails to
    /// serialize, and retention could delete an event a replay just gave a delivery.
    /// </summary>
    public static async Task RequireReadCommittedAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            "SELECT current_setting('transaction_isolation'), quote_ident(current_user), quote_ident(current_database())");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var level = reader.GetString(0);
        if (level != "read committed")
        {
            throw new IsolationException(level, reader.GetString(1), reader.GetString(2));
        }
    }

    /// <summary>Applies the worker's settings to <paramref name="builder"/> where <paramref name="given"/> does not set them.</summary>
    public static void Tune(NpgsqlConnectionStringBuilder builder, string given)
    {
        var explicitKeys = new DbConnectionStringBuilder { ConnectionString = given }.Keys
            .Cast<string>()
            .Select(key => key.Replace(" ", string.Empty, StringComparison.Ordinal).ToUpperInvariant())
            .ToHashSet();
        if (!explicitKeys.Contains("MAXAUTOPREPARE"))
        {
            builder.MaxAutoPrepare = MaxAutoPrepare;
            builder.AutoPrepareMinUsages = 2;
        }

        if (!explicitKeys.Contains("NORESETONCLOSE"))
        {
            builder.NoResetOnClose = true;
        }
    }
}

/// <summary>The role's transactions start at another isolation level than READ COMMITTED: see <see cref="WorkerConnection.RequireReadCommittedAsync"/>.</summary>
internal sealed class IsolationException(string level, string role, string database)
    : Exception($"transactions of role {role} start at {level.ToUpperInvariant()} (default_transaction_isolation), and TriggerEvents needs READ COMMITTED, " +
                $"where each statement sees what committed before it; that role itself or a superuser can run: " +
                $"ALTER ROLE {role} IN DATABASE {database} SET default_transaction_isolation = 'read committed';");
