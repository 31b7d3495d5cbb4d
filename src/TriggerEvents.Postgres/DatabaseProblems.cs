using System.Text.RegularExpressions;
using Npgsql;
using TriggerEvents.Postgres.Migrations;

namespace TriggerEvents.Postgres;

/// <summary>
/// Turns the database errors an operator can fix into one line that says how: a schema that is
/// not installed ("run 'triggerevents migrate' first") and a privilege the role lacks (the
/// <c>GRANT</c> that is missing). Shared by every command and by the worker's start-up.
/// </summary>
internal static partial class DatabaseProblems
{
    /// <summary>What migrate must fix, said once for every command.</summary>
    public const string RunMigrate = "run 'triggerevents migrate' first";

    // What the product's own statements need on each of its objects (the worker, retention and the
    // operator commands), so the missing grant named is one that is really needed, never more.
    private static readonly Dictionary<string, string[]> TablePrivileges = new(StringComparer.Ordinal)
    {
        ["event_log"] = ["SELECT"],
        ["deliveries"] = ["SELECT", "INSERT", "UPDATE", "DELETE"],
        ["subscriptions"] = ["SELECT", "INSERT", "UPDATE"],
        ["subscription_positions"] = ["SELECT", "INSERT", "UPDATE"],
        ["attempts"] = ["SELECT", "INSERT", "DELETE"],
        ["attempt_counts"] = ["SELECT", "INSERT", "UPDATE", "DELETE"],
        ["worker_signal"] = ["SELECT", "UPDATE"],
        ["migrations"] = ["SELECT"],
        ["event_triggers"] = ["SELECT"],
        ["triggers"] = ["SELECT"],
        ["subscription_status"] = ["SELECT"],
        ["attempt_history"] = ["SELECT"],
    };

    /// <summary>What the worker's role needs on each sequence: the delivery numbers of ordered subscriptions, and setting the idle flag's hint.</summary>
    private static readonly Dictionary<string, string> SequencePrivileges = new(StringComparer.Ordinal)
    {
        ["delivery_order"] = "USAGE",
        ["worker_idle_hint"] = "SELECT, UPDATE",
    };

    /// <summary>True for an error that means the schema is not installed, or older than this binary.</summary>
    public static bool IsSchemaMissing(PostgresException e) =>
        e.SqlState switch
        {
            PostgresErrorCodes.InvalidSchemaName => e.MessageText.Contains("\"trigger_events\"", StringComparison.Ordinal),
            PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.UndefinedFunction or PostgresErrorCodes.UndefinedColumn =>
                e.MessageText.Contains("trigger_events.", StringComparison.Ordinal),
            _ => false,
        };

    /// <summary>
    /// The one line for a schema problem, or null when <paramref name="e"/> is not one: the
    /// database is asked its schema version, since a missing table reads the same whether nothing
    /// is installed or an older version is.
    /// </summary>
    public static async Task<string?> DescribeSchemaProblemAsync(NpgsqlDataSource dataSource, PostgresException e, CancellationToken cancellationToken)
    {
        if (!IsSchemaMissing(e))
        {
            return null;
        }

        try
        {
            var version = await Migrator.GetVersionAsync(dataSource, cancellationToken);
            return version.Database == 0
                ? $"the trigger_events schema is not installed in this database: {RunMigrate}"
                : version.Database < version.Binary
                    ? $"this database's trigger_events schema is at version {version.Database}, this triggerevents needs {version.Binary}: {RunMigrate}"
                    : $"{e.MessageText} ({e.SqlState})";
        }
        catch (Exception inner) when (inner is NpgsqlException or TimeoutException)
        {
            return $"{e.MessageText} ({e.SqlState}): is the trigger_events schema installed? {RunMigrate}";
        }
    }

    /// <summary>True for "permission denied".</summary>
    public static bool IsPermissionDenied(PostgresException e) => e.SqlState == PostgresErrorCodes.InsufficientPrivilege;

    /// <summary>True for a write refused by a read-only server: a standby, or <c>default_transaction_read_only</c>.</summary>
    public static bool IsReadOnly(PostgresException e) => e.SqlState == PostgresErrorCodes.ReadOnlySqlTransaction;

    /// <summary>
    /// True for what waiting does not mend and only an operator can: a privilege the role lacks,
    /// a server that takes no writes. A worker stops on it (exit 1) instead of retrying for ever
    /// with its probes green; restarted, it connects afresh (to the new primary after a failover).
    /// </summary>
    public static bool NeedsOperator(PostgresException e) => IsPermissionDenied(e) || IsReadOnly(e);

    /// <summary>The one line for <see cref="IsReadOnly"/>.</summary>
    public static string DescribeReadOnly(PostgresException e) =>
        $"{e.MessageText} ({e.SqlState}): the server takes no writes (a standby, or default_transaction_read_only is on); " +
        "point TRIGGER_EVENTS_DATABASE_URL at the primary (with several hosts, add Target Session Attributes=read-write)";

    /// <summary>
    /// One line for a permission error: which object, which role, and the <c>GRANT</c> that is
    /// missing, found by asking the database what the role lacks of what the product needs there.
    /// Falls back to the database's own message when the object is not one of the product's.
    /// </summary>
    public static async Task<string> DescribePermissionAsync(NpgsqlDataSource dataSource, PostgresException e, CancellationToken cancellationToken)
    {
        var said = $"{e.MessageText} ({e.SqlState})";
        var match = PermissionDenied().Match(e.MessageText);
        if (!match.Success)
        {
            return said;
        }

        var kind = match.Groups[1].Value;
        var name = match.Groups[2].Value;
        try
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            var role = await ScalarAsync<string>(connection, "SELECT quote_ident(current_user)", cancellationToken, []);
            if (kind == "table" && !TablePrivileges.ContainsKey(name) &&
                await PartitionWithoutTriggerAsync(connection, name, cancellationToken) is { } partition)
            {
                return $"{said}: the role {role} lacks TRIGGER on the partition {partition.Name}, which replacing the capture trigger of a " +
                       $"partitioned table needs on each partition; the table's owner can run: GRANT TRIGGER ON {partition.Name} TO {role}; " +
                       $"and, for partitions made later: ALTER DEFAULT PRIVILEGES FOR ROLE {partition.Owner} IN SCHEMA {partition.Schema} GRANT TRIGGER ON TABLES TO {role};";
            }

            string? grant = kind switch
            {
                "schema" when name == "trigger_events" =>
                    await ScalarAsync<bool>(connection, "SELECT has_schema_privilege('trigger_events', 'USAGE')", cancellationToken, [])
                        ? null : "USAGE ON SCHEMA trigger_events",
                "table" or "view" => await MissingTablePrivilegesAsync(connection, name, cancellationToken) is { Length: > 0 } missing
                    ? $"{missing} ON trigger_events.{name}" : null,
                "function" or "procedure" => $"EXECUTE ON FUNCTION trigger_events.{name}",
                "sequence" when SequencePrivileges.TryGetValue(name, out var privilege) => $"{privilege} ON SEQUENCE trigger_events.{name}",
                _ => null,
            };
            return grant is null
                ? $"{said}: the role {role} lacks a privilege there; sql/README.md lists the grants"
                : $"{said}: the role {role} lacks {grant}; a schema owner can run: GRANT {grant} TO {role};";
        }
        catch (Exception inner) when (inner is NpgsqlException or TimeoutException)
        {
            return said;
        }
    }

    /// <summary>
    /// A partition named <paramref name="name"/> the role may not make triggers on, with its
    /// owner and schema: PostgreSQL clones a partitioned table's triggers onto each partition and
    /// checks the right there, and a partition made after <c>attach</c> does not inherit a grant.
    /// </summary>
    private static async Task<(string Name, string Owner, string Schema)?> PartitionWithoutTriggerAsync(
        NpgsqlConnection connection, string name, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT format('%I.%I', n.nspname, c.relname), quote_ident(pg_get_userbyid(c.relowner)), quote_ident(n.nspname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = $1 AND c.relispartition AND NOT has_table_privilege(c.oid, 'TRIGGER')
            ORDER BY n.nspname LIMIT 1
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? (reader.GetString(0), reader.GetString(1), reader.GetString(2)) : null;
    }

    private static async Task<string?> MissingTablePrivilegesAsync(NpgsqlConnection connection, string name, CancellationToken cancellationToken)
    {
        if (!TablePrivileges.TryGetValue(name, out var needed))
        {
            return null;
        }

        var missing = new List<string>();
        foreach (var privilege in needed)
        {
            if (!await ScalarAsync<bool>(connection, "SELECT has_table_privilege($1::regclass, $2)", cancellationToken, ["trigger_events." + name, privilege]))
            {
                missing.Add(privilege);
            }
        }

        return string.Join(", ", missing);
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, CancellationToken cancellationToken, string[] parameters)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = parameter });
        }

        return (T)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    // PostgreSQL's wording, e.g. "permission denied for table deliveries", "... for schema trigger_events".
    [GeneratedRegex(@"^permission denied for (schema|table|view|function|procedure|sequence) ""?([A-Za-z0-9_]+)""?\z", RegexOptions.CultureInvariant)]
    private static partial Regex PermissionDenied();
}
