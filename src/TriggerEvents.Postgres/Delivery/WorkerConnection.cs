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
