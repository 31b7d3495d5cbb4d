using Npgsql;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Postgres.Delivery;

/// <summary>
/// Checks an ordered subscription's key against its trigger's table when the worker registers
/// it: every key column must be a column of the table and of the events' rows (the trigger's
/// <c>payload_columns</c>), and without <c>ordering_key</c> the table must have a primary key.
/// A key the events do not carry would give every event the same key, silently serialising the
/// whole subscription. A trigger not attached yet is not checked (the worker warns about it).
/// </summary>
internal static class OrderingKeyCheck
{
    private const string TableSql = """
        SELECT et.relid::regclass::text,
               ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = et.relid AND a.attnum > 0 AND NOT a.attisdropped),
               nullif(trigger_events.ordering_columns(et.name, '{}'), '{}'),
               trigger_events.column_names(et.relid, et.payload_attnums)
        FROM trigger_events.event_triggers et WHERE et.name = $1
        """;

    /// <summary>The problem with <paramref name="subscription"/>'s key, or null when there is none (or it is not ordered).</summary>
    public static async Task<ConfigError?> CheckAsync(NpgsqlConnection connection, SubscriptionConfig subscription, CancellationToken cancellationToken)
    {
        if (subscription.Ordering is not { } ordering)
        {
            return null;
        }

        await using var command = new NpgsqlCommand(TableSql, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = subscription.Trigger });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        var table = reader.GetString(0);
        var columns = reader.GetFieldValue<string[]>(1);
        var primaryKey = reader.IsDBNull(2) ? null : reader.GetFieldValue<string[]>(2);
        var payload = reader.IsDBNull(3) ? null : reader.GetFieldValue<string[]>(3);
        var location = ordering.Location ?? subscription.Location ?? new ConfigLocation("configuration", 0, 0);
        var path = $"subscription '{subscription.Name}'";
        if (ordering.KeyColumns.Count == 0)
        {
            if (primaryKey is null || primaryKey.Length == 0)
            {
                return location.Error($"{path}: ordering: key needs ordering_key, since table {table} has no primary key");
            }

            return payload is not null && primaryKey.FirstOrDefault(c => !payload.Contains(c, StringComparer.Ordinal)) is { } missing
                ? location.Error($"{path}: the primary key column '{missing}' of {table} is not among the payload_columns of trigger '{subscription.Trigger}', so events do not carry their key")
                : null;
        }

        foreach (var column in ordering.KeyColumns)
        {
            if (!columns.Contains(column, StringComparer.Ordinal))
            {
                return location.Error($"{path}: ordering_key: '{column}' is not a column of {table}");
            }

            if (payload is not null && !payload.Contains(column, StringComparer.Ordinal))
            {
                return location.Error($"{path}: ordering_key: '{column}' is not among the payload_columns of trigger '{subscription.Trigger}', so events do not carry it");
            }
        }

        return null;
    }
}
