using Npgsql;

namespace TriggerEvents.Postgres.Migrations;

/// <summary>
/// What a migration run found and did. <paramref name="Repaired"/>: what it put right in a
/// database moved here by a logical dump or logical replication (<see cref="Migrator.RepairAfterMoveSql"/>), if anything.
/// </summary>
internal sealed record MigrationResult(int FromVersion, int ToVersion, IReadOnlyList<int> Applied, string? Repaired = null);

/// <summary>
/// The database's schema version against the binary's. <paramref name="WorkersFrom"/>: of a
/// database newer than the binary, the oldest schema version whose workers run against it, as
/// the migrations this binary does not know declare it (<c>migrations.workers_from</c>, 000026).
/// </summary>
internal sealed record SchemaVersion(int Database, int Binary, int? WorkersFrom = null)
{
    public bool IsCurrent => Database == Binary;

    /// <summary>A newer release migrated the database, and every migration this binary does not know keeps its workers working.</summary>
    public bool IsNewerAndRunsThisBinary => Database > Binary && WorkersFrom <= Binary;
}

/// <summary>
/// Raised when the database was migrated by a newer TriggerEvents: <c>migrate</c> refuses it
/// always, the worker where the newer migrations do not keep its workers working.
/// </summary>
internal sealed class SchemaTooNewException(SchemaVersion version)
    : Exception(version.IsNewerAndRunsThisBinary
        ? $"The database schema is at version {version.Database}, newer than this binary knows ({version.Binary}), and was left as it is. " +
          $"Its migrations keep the workers of version {version.WorkersFrom} and later working, so this release's workers run on it."
        : $"The database schema is at version {version.Database}, newer than this binary knows ({version.Binary}), " +
          $"and needs workers of schema version {version.WorkersFrom ?? version.Database} or later; upgrade TriggerEvents.");

/// <summary>
/// Installs and upgrades the <c>trigger_events</c> schema from the embedded <c>sql/</c> files.
/// </summary>
/// <remarks>
/// A session advisory lock serialises concurrent migrators (several replicas starting at once);
/// each migration runs in its own transaction that first records its version, so even a
/// migrator that bypassed the lock would fail on the primary key instead of applying twice.
/// Each transaction waits for a table's lock at most the <see cref="MigrationLockPolicy"/>'s
/// timeout, and is tried again when it gives up (or is chosen as a deadlock's victim), so a
/// transaction left open on an attached table delays the upgrade instead of every writer.
/// </remarks>
internal static class Migrator
{
    /// <summary>
    /// The role the worker and the console log in as, when a DBA created it (SPEC "Roles and
    /// secrets"): every migrate grants it exactly the rights of the schema it leaves behind, so a
    /// migration that adds or replaces an object the worker uses never leaves it without them.
    /// </summary>
    public const string WorkerRole = "trigger_events_worker";

    /// <summary>The first schema version with <c>trigger_events.grant_worker_role</c>.</summary>
    private const int GrantsVersion = 5;

    /// <summary>
    /// The worker's rights, granted again to <see cref="WorkerRole"/> and to every role that has
    /// been given them under another name (<c>grant_worker_role</c> or by hand): those that may
    /// update <c>worker_signal</c>, which only a worker does. Granting them to the named role
    /// alone left the others without what later migrations added (000008's sequence
    /// <c>delivery_order</c>, which every fan-out uses), and each such migration had to carry
    /// its grants over itself.
    /// </summary>
    private const string GrantWorkerRoleSql = $"""
        SELECT trigger_events.grant_worker_role(r.rolname)
        FROM pg_roles r
        WHERE r.rolname = '{WorkerRole}'
           OR r.oid IN (
               SELECT a.grantee
               FROM pg_class c CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
               WHERE c.oid = 'trigger_events.worker_signal'::regclass AND a.privilege_type = 'UPDATE'
                 AND a.grantee <> 0 AND a.grantee <> c.relowner);
        """;

    /// <summary>The first schema version that knows where its state was made (<c>trigger_events.installation</c>).</summary>
    public const int MovesVersion = 27;

    /// <summary>
    /// Puts right a database whose schema state was copied here from another (a logical dump, a
    /// copy by logical replication): the registry's column numbers, every capture, and, from
    /// another server, the subscriptions' places. Nothing, and NULL, otherwise.
    /// </summary>
    internal const string RepairAfterMoveSql = "SELECT trigger_events.repair_after_move()";

    /// <summary>Arbitrary but fixed: the advisory lock key that serialises migrators.</summary>
    internal const long AdvisoryLockKey = 0x7472_6967_6d69_67; // "trigmig"

    private const string Bootstrap = """
        CREATE SCHEMA IF NOT EXISTS trigger_events;
        CREATE TABLE IF NOT EXISTS trigger_events.migrations (
            version    int         PRIMARY KEY,
            name       text        NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
        """;

    public static Task<MigrationResult> MigrateAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken) =>
        MigrateAsync(dataSource, MigrationSource.LatestVersion, MigrationLockPolicy.Default, cancellationToken);

    public static Task<MigrationResult> MigrateAsync(NpgsqlDataSource dataSource, MigrationLockPolicy locks, CancellationToken cancellationToken) =>
        MigrateAsync(dataSource, MigrationSource.LatestVersion, locks, cancellationToken);

    public static Task<MigrationResult> MigrateAsync(NpgsqlDataSource dataSource, int targetVersion, CancellationToken cancellationToken) =>
        MigrateAsync(dataSource, targetVersion, MigrationLockPolicy.Default, cancellationToken);

    /// <summary>
    /// Applies the migrations up to <paramref name="targetVersion"/>: upgrade tests start from a
    /// database as an earlier release left it.
    /// </summary>
    public static async Task<MigrationResult> MigrateAsync(
        NpgsqlDataSource dataSource, int targetVersion, MigrationLockPolicy locks, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, null, $"SELECT pg_advisory_lock({AdvisoryLockKey})", cancellationToken);
        try
        {
            await ExecuteAsync(connection, null, Bootstrap, cancellationToken);
            var version = await ReadVersionAsync(connection, cancellationToken);
            var from = version.Database;
            if (from > MigrationSource.LatestVersion)
            {
                throw new SchemaTooNewException(version);
            }

            var applied = new List<int>();
            foreach (var migration in MigrationSource.All.Where(m => m.Version > from && m.Version <= targetVersion))
            {
                await ApplyWithinLockTimeoutAsync(connection, migration, locks, cancellationToken);
                applied.Add(migration.Version);
            }

            var to = Math.Max(from, Math.Min(targetVersion, MigrationSource.LatestVersion));
            if (to >= GrantsVersion)
            {
                await ExecuteAsync(connection, null, GrantWorkerRoleSql, cancellationToken);
            }

            string? repaired = null;
            if (to >= MovesVersion)
            {
                await using var repair = new NpgsqlCommand(RepairAfterMoveSql, connection) { CommandTimeout = 0 };
                repaired = await repair.ExecuteScalarAsync(cancellationToken) as string;
            }

            return new MigrationResult(from, to, applied, repaired);
        }
        finally
        {
            if (connection.State == System.Data.ConnectionState.Open)
            {
                await ExecuteAsync(connection, null, $"SELECT pg_advisory_unlock({AdvisoryLockKey})", CancellationToken.None);
            }
        }
    }

    private static async Task ApplyWithinLockTimeoutAsync(
        NpgsqlConnection connection, Migration migration, MigrationLockPolicy locks, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await ApplyAsync(connection, migration, locks, cancellationToken);
                return;
            }
            catch (PostgresException e) when (
                (e.SqlState == PostgresErrorCodes.LockNotAvailable && locks.LockTimeout > TimeSpan.Zero)
                || e.SqlState == PostgresErrorCodes.DeadlockDetected)
            {
                // The transaction is rolled back: nothing of the migration stays, and the
                // writers that queued behind its lock request run.
                var holders = await LockHolders.ReadAsync(connection, cancellationToken);
                if (attempt >= locks.Tries)
                {
                    throw new MigrationLockException(migration, locks, holders, e);
                }

                var pause = locks.Pause(attempt);
                locks.Waiting?.Invoke(new MigrationLockWait(migration, attempt, locks.Tries, pause, e.MessageText, holders));
                await Task.Delay(pause, cancellationToken);
            }
        }
    }

    private static async Task ApplyAsync(NpgsqlConnection connection, Migration migration, MigrationLockPolicy locks, CancellationToken cancellationToken)
    {
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await ExecuteAsync(connection, transaction, FormattableString.Invariant($"SET LOCAL lock_timeout = {locks.LockTimeoutMilliseconds}"), cancellationToken);
        await using (var record = new NpgsqlCommand("INSERT INTO trigger_events.migrations (version, name) VALUES ($1, $2)", connection, transaction))
        {
            record.Parameters.Add(new NpgsqlParameter<int> { TypedValue = migration.Version });
            record.Parameters.Add(new NpgsqlParameter<string> { TypedValue = migration.Name });
            await record.ExecuteNonQueryAsync(cancellationToken);
        }

        await ExecuteAsync(connection, transaction, migration.Sql, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>The schema version of the database, 0 when TriggerEvents was never installed.</summary>
    public static async Task<SchemaVersion> GetVersionAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await ReadVersionAsync(connection, cancellationToken);
    }

    /// <summary>
    /// The whole upgrade as one plain SQL script, for DBAs who apply SQL with their own tools.
    /// It takes the same advisory lock and records versions the same way as
    /// <see cref="MigrateAsync(NpgsqlDataSource, int, CancellationToken)"/>, and each migration skips itself when already applied, so the
    /// script can be run again and mixed with <c>triggerevents migrate</c>.
    /// </summary>
    public static void WriteScript(TextWriter writer)
    {
        writer.WriteLine($"-- TriggerEvents schema, versions 1 to {MigrationSource.LatestVersion}. Apply with: psql -v ON_ERROR_STOP=1 -f this-file.sql");
        writer.WriteLine($"SELECT pg_advisory_lock({AdvisoryLockKey});");
        writer.WriteLine($"""
            -- A migration that changes attached tables' triggers locks each table. Rather than hold up
            -- every write to one behind a transaction left open, it gives up after this long and the
            -- script stops; run it again (applied migrations skip themselves), or raise the timeout.
            SET lock_timeout = '{MigrationLockPolicy.Default.LockTimeout.TotalSeconds}s';
            """);
        writer.WriteLine(Bootstrap);
        writer.WriteLine($"""
            DO $$
            BEGIN
                IF (SELECT coalesce(max(version), 0) FROM trigger_events.migrations) > {MigrationSource.LatestVersion} THEN
                    RAISE EXCEPTION 'The database schema is newer than this script ({MigrationSource.LatestVersion}); use a newer TriggerEvents.';
                END IF;
            END $$;
            """);
        foreach (var migration in MigrationSource.All)
        {
            var tag = $"$te_migration_{migration.Version:D6}$";
            if (migration.Sql.Contains(tag, StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"Migration {migration.Version} contains the quoting tag {tag}.");
            }

            writer.WriteLine();
            writer.WriteLine($"-- Migration {migration.Version}: {migration.Name}");
            writer.WriteLine($"DO {tag}");
            writer.WriteLine("BEGIN");
            writer.WriteLine($"    IF EXISTS (SELECT 1 FROM trigger_events.migrations WHERE version = {migration.Version}) THEN");
            writer.WriteLine("        RETURN;");
            writer.WriteLine("    END IF;");
            if (migration.Version > 1)
            {
                // A run that went on past a migration that gave up waiting for a lock must not
                // apply the later ones over the gap: max(version) would then hide it for good.
                writer.WriteLine($"    IF NOT EXISTS (SELECT 1 FROM trigger_events.migrations WHERE version = {migration.Version - 1}) THEN");
                writer.WriteLine($"        RAISE EXCEPTION 'Migration {migration.Version - 1} is not applied, so {migration.Version} is not either; run this script again with ON_ERROR_STOP=1.';");
                writer.WriteLine("    END IF;");
            }

            writer.WriteLine($"    INSERT INTO trigger_events.migrations (version, name) VALUES ({migration.Version}, '{migration.Name.Replace("'", "''", StringComparison.Ordinal)}');");
            writer.WriteLine("    EXECUTE " + tag.TrimEnd('$') + "_sql$");
            writer.WriteLine(migration.Sql.TrimEnd());
            writer.WriteLine(tag.TrimEnd('$') + "_sql$;");
            writer.WriteLine($"END {tag};");
        }

        writer.WriteLine();
        writer.WriteLine(GrantWorkerRoleSql);
        writer.WriteLine($"{RepairAfterMoveSql};");
        writer.WriteLine($"SELECT pg_advisory_unlock({AdvisoryLockKey});");
        writer.WriteLine("RESET lock_timeout;");
    }

    private static async Task<SchemaVersion> ReadVersionAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var binary = MigrationSource.LatestVersion;
        await using var exists = new NpgsqlCommand("SELECT to_regclass('trigger_events.migrations') IS NOT NULL", connection);
        if (!(bool)(await exists.ExecuteScalarAsync(cancellationToken))!)
        {
            return new SchemaVersion(0, binary);
        }

        await using var command = new NpgsqlCommand("SELECT coalesce(max(version), 0) FROM trigger_events.migrations", connection);
        var database = (int)(await command.ExecuteScalarAsync(cancellationToken))!;
        if (database <= binary)
        {
            return new SchemaVersion(database, binary);
        }

        // Newer: the migrations this binary does not know, each declaring the oldest workers it
        // keeps working (NULL: none before itself). A newer database has the column (000026).
        await using var floor = new NpgsqlCommand(
            "SELECT max(coalesce(workers_from, version)) FROM trigger_events.migrations WHERE version > $1", connection);
        floor.Parameters.Add(new NpgsqlParameter<int> { TypedValue = binary });
        return new SchemaVersion(database, binary, (int)(await floor.ExecuteScalarAsync(cancellationToken))!);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken cancellationToken)
    {
        // No command timeout: waiting for another migrator's lock, or building an index on a large
        // log, may take longer than Npgsql's default 30 seconds, and stopping half-way helps
        // nobody. Cancellation (Ctrl-C, a stopping host) still ends it.
        await using var command = new NpgsqlCommand(sql, connection, transaction) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
