using Npgsql;
using NpgsqlTypes;

namespace TriggerEvents.Postgres.Operations;

/// <summary>
/// One row of <c>trigger_events.triggers</c>: Health is ok, missing, disabled or outdated
/// (<see cref="EventTriggerAdmin.HealthStates"/>); ConditionErrors counts the events captured
/// although their condition raised.
/// </summary>
internal sealed record AttachedTrigger(
    string Name, string? TableSchema, string? TableName, string[] Operations, string[]? UpdateColumns,
    string[]? PayloadColumns, string? Condition, bool Notify, bool TableExists, string Health, int TemplateVersion,
    long ConditionErrors);

/// <summary>The SQL API (attach, detach, invoke, the triggers view) for the command line.</summary>
internal static class EventTriggerAdmin
{
    /// <summary>What <c>trigger_events.trigger_health()</c> reports, in the order shown.</summary>
    public static readonly string[] HealthStates = ["ok", "missing", "disabled", "outdated"];

    /// <summary>How long attach and detach wait for the table's lock unless told otherwise (as in SQL).</summary>
    public static readonly TimeSpan DefaultLockTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Calls <c>trigger_events.attach</c>; returns created, replaced, repaired or unchanged.</summary>
    public static async Task<string> AttachAsync(
        NpgsqlDataSource dataSource, string table, string trigger, string[]? operations, string[]? updateColumns,
        string[]? payloadColumns, string? condition, bool notify, TimeSpan lockTimeout, CancellationToken cancellationToken)
    {
        // The table name is parsed by PostgreSQL's regclass input, like a name typed in SQL:
        // schema.table, with "double quotes" for mixed case or odd characters.
        await using var command = dataSource.CreateCommand(
            "SELECT trigger_events.attach($1::regclass, $2, coalesce($3, '{INSERT,UPDATE,DELETE}'), $4, $5, $6, $7, make_interval(secs => $8))");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = table });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = trigger });
        command.Parameters.Add(TextArray(operations));
        command.Parameters.Add(TextArray(updateColumns));
        command.Parameters.Add(TextArray(payloadColumns));
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)condition ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter<bool> { TypedValue = notify });
        command.Parameters.Add(new NpgsqlParameter<double> { TypedValue = lockTimeout.TotalSeconds });
        return (string)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public static async Task<bool> DetachAsync(NpgsqlDataSource dataSource, string trigger, TimeSpan lockTimeout, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT trigger_events.detach($1, make_interval(secs => $2))");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = trigger });
        command.Parameters.Add(new NpgsqlParameter<double> { TypedValue = lockTimeout.TotalSeconds });
        return (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public static async Task<long> InvokeAsync(NpgsqlDataSource dataSource, string trigger, string payloadJson, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT trigger_events.invoke($1, $2::jsonb)");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = trigger });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = payloadJson });
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// Every attached trigger, as <c>trigger list</c> and the console's triggers page show them;
    /// each row's <c>condition_errors</c> is counted through the partial index
    /// event_log_condition_errors (ConsoleQueryPlanTests).
    /// </summary>
    internal const string ListSql = """
        SELECT name, table_schema, table_name, operations, update_columns, payload_columns, condition, notify, table_exists,
               health, template_version, condition_errors
        FROM trigger_events.triggers ORDER BY name
        """;

    public static async Task<IReadOnlyList<AttachedTrigger>> ListAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(ListSql);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var triggers = new List<AttachedTrigger>();
        while (await reader.ReadAsync(cancellationToken))
        {
            triggers.Add(new AttachedTrigger(
                reader.GetString(0),
                reader.IsDBNull(1) ? null : reader.GetString(1),
                reader.IsDBNull(2) ? null : reader.GetString(2),
                reader.GetFieldValue<string[]>(3),
                reader.IsDBNull(4) ? null : reader.GetFieldValue<string[]>(4),
                reader.IsDBNull(5) ? null : reader.GetFieldValue<string[]>(5),
                reader.IsDBNull(6) ? null : reader.GetString(6),
                reader.GetBoolean(7),
                reader.GetBoolean(8),
                reader.GetString(9),
                reader.GetInt32(10),
                reader.GetInt64(11)));
        }

        return triggers;
    }

    private static NpgsqlParameter TextArray(string[]? values) =>
        new() { Value = (object?)values ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text };
}
