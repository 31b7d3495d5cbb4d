using Npgsql;

namespace TriggerEvents.Postgres.Migrations;

/// <summary>
/// How long one migration waits for a table's lock, and how many times it is tried. A migration
/// that replaces capture triggers takes SHARE ROW EXCLUSIVE on every attached table; waiting for
/// it behind a transaction left open, it would queue every later write of the application behind
/// itself. Under a lock timeout it gives up instead, rolls back (each migration is one
/// transaction), and is tried again after a pause in which the writers run.
/// </summary>
internal sealed record MigrationLockPolicy(TimeSpan LockTimeout, int Tries)
{
    /// <summary>5 seconds a try, as <c>attach</c> waits; ten tries, about two minutes and a half in all.</summary>
    public static readonly MigrationLockPolicy Default = new(TimeSpan.FromSeconds(5), 10);

    /// <summary>The pause after a failed try: 1, 2, 4, 8 seconds, then 15.</summary>
    public Func<int, TimeSpan> Pause { get; init; } = failedTry => TimeSpan.FromSeconds(Math.Min(Math.Pow(2, failedTry - 1), 15));

    /// <summary>Called after each failed try that will be tried again.</summary>
    public Action<MigrationLockWait>? Waiting { get; init; }

    /// <summary>The setting for <c>SET LOCAL lock_timeout</c>, in milliseconds; 0 waits without limit.</summary>
    public long LockTimeoutMilliseconds => (long)Math.Ceiling(LockTimeout.TotalMilliseconds);
}

/// <summary>A session that held a lock on a table a migration changes, when the migration gave up waiting.</summary>
/// <remarks>
/// Role, application, state and transaction start are null where PostgreSQL hides them from
/// the migrating role (another role's session, without <c>pg_read_all_stats</c>).
/// </remarks>
internal sealed record LockHolder(int Pid, string? Role, string? Application, string? State, DateTimeOffset? TransactionStart, string Tables)
{
    public override string ToString()
    {
        string?[] known = [Role, string.IsNullOrEmpty(Application) ? null : $"application '{Application}'", State,
            TransactionStart is { } start ? $"transaction open since {start:u}" : null];
        var details = string.Join(", ", known.Where(part => part is not null));
        return $"pid {Pid}" + (details.Length == 0 ? "" : $" ({details})") + $" holding {Tables}";
    }
}

/// <summary>One failed try of a migration, to be tried again after <see cref="Pause"/>.</summary>
internal sealed record MigrationLockWait(Migration Migration, int Try, int Tries, TimeSpan Pause, string Reason, IReadOnlyList<LockHolder> Holders);

/// <summary>A migration that could not take its locks in any of its tries; it and the later ones were not applied.</summary>
internal sealed class MigrationLockException(Migration migration, MigrationLockPolicy policy, IReadOnlyList<LockHolder> holders, PostgresException last)
    : Exception(
        $"Migration {migration.Version} ({migration.Name}) could not take the locks it needs within {policy.LockTimeout.TotalSeconds:0.###}s "
        + $"in {policy.Tries} tries ({last.MessageText}); it was not applied, nor any later one. "
        + (holders.Count == 0 ? "No session held a lock on an attached table or the trigger_events schema's tables when it gave up. "
            : "Sessions holding locks on the tables it changes: " + string.Join("; ", holders) + ". ")
        + "Run migrate again when they have finished, or with --lock-timeout 0 to wait without limit (writes to those tables then wait behind it).",
        last)
{
    public Migration Migration { get; } = migration;

    public IReadOnlyList<LockHolder> Holders { get; } = holders;
}

/// <summary>Who holds the locks a migration waits for.</summary>
internal static class LockHolders
{
    // Sessions with a granted lock on an attached table (a partition of one included) or a table
    // of the schema, the oldest transactions first: one of them kept the migration waiting.
    private const string HoldersSql = """
        SELECT l.pid, a.usename::text, a.application_name, a.state, a.xact_start,
               string_agg(DISTINCT l.relation::regclass::text, ', ')
        FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND (l.relation IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'trigger_events'::regnamespace AND c.relkind IN ('r', 'p'))
               OR l.relation IN (SELECT et.relid FROM trigger_events.event_triggers et)
               -- pg_partition_tree gives no row for a table that is not partitioned.
               OR l.relation IN (SELECT pt.relid FROM trigger_events.event_triggers et
                                 CROSS JOIN LATERAL pg_partition_tree(et.relid) pt))
        GROUP BY 1, 2, 3, 4, 5
        ORDER BY a.xact_start NULLS LAST, l.pid
        LIMIT 5
        """;

    public static async Task<IReadOnlyList<LockHolder>> ReadAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        // Before 000001 there is no registry of attached tables, and no schema to read.
        await using (var exists = new NpgsqlCommand("SELECT to_regclass('trigger_events.event_triggers') IS NOT NULL", connection))
        {
            if (!(bool)(await exists.ExecuteScalarAsync(cancellationToken))!)
            {
                return [];
            }
        }

        await using var command = new NpgsqlCommand(HoldersSql, connection);
        var holders = new List<LockHolder>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            holders.Add(new LockHolder(
                reader.GetInt32(0),
                reader.IsDBNull(1) ? null : reader.GetString(1),
                reader.IsDBNull(2) ? null : reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetString(3),
                reader.IsDBNull(4) ? null : reader.GetFieldValue<DateTimeOffset>(4),
                reader.GetString(5)));
        }

        return holders;
    }
}
