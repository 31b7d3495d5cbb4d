using System.Globalization;
using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// With <c>--statements</c>: where the server's time goes during the fresh drain (a) and the paced
/// run of (b), by statement,
/// from <c>pg_stat_statements</c> (server start with the library preloaded, statements inside
/// functions such as the fan-out's tracked too). Times are the server's wall clock in the
/// statement, planning included, per event drained: on a busy two-core machine they include
/// waiting for a core, so read them as shares, not as CPU. A nested statement's time is also in
/// the statement that called it (the <c>top</c> column says which are top level).
/// </summary>
internal static class StatementProfile
{
    /// <summary>The server settings it needs, added to the run's own.</summary>
    public static readonly IReadOnlyList<string> Settings =
        ["shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=all", "pg_stat_statements.max=1000"];

    /// <summary>Creates the view if needed and forgets what came before the drain.</summary>
    public static async Task ResetAsync(BenchDatabase database, CancellationToken cancellationToken)
    {
        await database.ExecuteAsync("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", cancellationToken);
        await database.ExecuteAsync("SELECT pg_stat_statements_reset()", cancellationToken);
    }

    /// <summary>Prints the statements that took the most time, per event of <paramref name="events"/>.</summary>
    public static async Task PrintAsync(BenchDatabase database, string run, int events, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand("""
            SELECT toplevel, calls, rows, total_exec_time, total_plan_time,
                   left(regexp_replace(query, '\s+', ' ', 'g'), 110)
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY total_exec_time + total_plan_time DESC
            LIMIT 14
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        Console.WriteLine($"    server time by statement over {run} (pg_stat_statements; µs per event of {events:N0}; exec + plan):");
        Console.WriteLine("    top | calls | rows/call | ms/call | exec µs/ev | plan µs/ev | statement");
        while (await reader.ReadAsync(cancellationToken))
        {
            var calls = reader.GetInt64(1);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"    {(reader.GetBoolean(0) ? "yes" : "no"),3} | {calls,6:N0} | {(double)reader.GetInt64(2) / Math.Max(1, calls),9:F1} | {(reader.GetDouble(3) + reader.GetDouble(4)) / Math.Max(1, calls),7:F3} | {reader.GetDouble(3) * 1000 / events,10:F2} | {reader.GetDouble(4) * 1000 / events,10:F2} | {reader.GetString(5)}"));
        }
    }
}
