using Npgsql;
using TriggerEvents.Postgres.Migrations;

namespace TriggerEvents.Testing;

/// <summary>
/// A fresh database for one test fixture, cloned from a template this process migrated once,
/// so every fixture starts from an installed schema in milliseconds and fixtures can run in
/// parallel without seeing each other's rows.
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    private static readonly SemaphoreSlim TemplateLock = new(1, 1);
    private static string? templateName;

    private TestDatabase(string name, string connectionString)
    {
        Name = name;
        ConnectionString = connectionString;
        DataSource = NpgsqlDataSource.Create(connectionString);
    }

    public string Name { get; }

    public string ConnectionString { get; }

    public NpgsqlDataSource DataSource { get; }

    /// <summary>
    /// This database, logging in as <c>trigger_events_worker</c> with only the rights migrate grants
    /// it: what workers started by the tests use, as the manifests' workers do.
    /// </summary>
    public string WorkerConnectionString => AsWorker(ConnectionString);

    /// <summary>The same connection string, logging in as the worker role (<see cref="EnsureWorkerRoleAsync"/>).</summary>
    public static string AsWorker(string connectionString) =>
        new NpgsqlConnectionStringBuilder(connectionString) { Username = Migrator.WorkerRole, Password = WorkerRolePassword }.ConnectionString;

    /// <summary>
    /// Creates the worker role in the cluster unless it exists (roles belong to the cluster; test
    /// processes sharing one race to create it). migrate then grants it the worker's rights.
    /// </summary>
    public static async Task EnsureWorkerRoleAsync(string adminConnectionString)
    {
        await ExecuteAsync(adminConnectionString, $"""
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{Migrator.WorkerRole}') THEN
                    CREATE ROLE {Migrator.WorkerRole} LOGIN PASSWORD '{WorkerRolePassword}';
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END
            $$
            """);
    }

    /// <summary>
    /// Creates a migrated database (or an empty one, for migration tests); with
    /// <paramref name="encoding"/>, one in that server encoding (and the C locale), migrated afresh.
    /// </summary>
    public static async Task<TestDatabase> CreateAsync(bool migrated = true, string? encoding = null)
    {
        var admin = await PostgresServer.GetAdminConnectionStringAsync();
        var name = $"te_test_{Guid.NewGuid():N}";
        if (encoding is not null)
        {
            await EnsureWorkerRoleAsync(admin);
            await ExecuteAsync(admin, $"CREATE DATABASE {name} TEMPLATE template0 ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C'");
            var encoded = new TestDatabase(name, new NpgsqlConnectionStringBuilder(admin) { Database = name }.ConnectionString);
            if (migrated)
            {
                await Migrator.MigrateAsync(encoded.DataSource, CancellationToken.None);
            }

            return encoded;
        }

        var template = migrated ? await GetTemplateAsync(admin) : "template0";
        await TemplateLock.WaitAsync();
        try
        {
            await ExecuteAsync(admin, $"CREATE DATABASE {name} TEMPLATE {template}");
        }
        finally
        {
            TemplateLock.Release();
        }

        return new TestDatabase(name, new NpgsqlConnectionStringBuilder(admin) { Database = name }.ConnectionString);
    }

    public async ValueTask DisposeAsync()
    {
        await DataSource.DisposeAsync();
        NpgsqlConnection.ClearAllPools();
        var admin = await PostgresServer.GetAdminConnectionStringAsync();
        await ExecuteAsync(admin, $"DROP DATABASE IF EXISTS {Name} WITH (FORCE)");
    }

    /// <summary>Runs SQL on this database in its own connection and returns the first value.</summary>
    public async Task<T> ScalarAsync<T>(string sql, params object?[] parameters)
    {
        await using var command = DataSource.CreateCommand(sql);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = parameter ?? DBNull.Value });
        }

        var value = await command.ExecuteScalarAsync();
        return value is DBNull or null ? default! : (T)value;
    }

    /// <summary>Runs SQL on this database in its own connection.</summary>
    public async Task<int> ExecuteAsync(string sql, params object?[] parameters)
    {
        await using var command = DataSource.CreateCommand(sql);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = parameter ?? DBNull.Value });
        }

        return await command.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// Turns every event committed so far into deliveries for the named subscriptions (all when
    /// none are named), as the fan-out at the head of a worker's claims does, calling it until a
    /// call that started no batch in progress finds nothing; returns how many deliveries it made.
    /// </summary>
    public async Task<long> FanOutAsync(params string[] subscriptions)
    {
        const string inProgress = """
            SELECT EXISTS (SELECT FROM trigger_events.subscription_positions sp JOIN trigger_events.subscriptions s ON s.id = sp.subscription_id
                           WHERE sp.batch_end IS NOT NULL AND (cardinality($1::text[]) = 0 OR s.name = ANY ($1::text[])))
            """;
        long total = 0;
        while (true)
        {
            var batchInProgress = await ScalarAsync<bool>(inProgress, (object)subscriptions);
            var made = await ScalarAsync<long>(
                """
                SELECT trigger_events.fan_out(CASE WHEN cardinality($1::text[]) > 0
                    THEN ARRAY(SELECT id FROM trigger_events.subscriptions WHERE name = ANY ($1::text[])) END)
                """,
                (object)subscriptions);
            total += made;
            if (made == 0 && !batchInProgress && !await ScalarAsync<bool>(inProgress, (object)subscriptions))
            {
                return total;
            }
        }
    }

    private const string WorkerRolePassword = "trigger_events_worker";

    private static async Task<string> GetTemplateAsync(string admin)
    {
        await TemplateLock.WaitAsync();
        try
        {
            if (templateName is not null)
            {
                return templateName;
            }

            var name = $"te_template_{Environment.ProcessId}_{Guid.NewGuid():N}"[..40];
            await EnsureWorkerRoleAsync(admin);
            await ExecuteAsync(admin, $"CREATE DATABASE {name}");
            var connectionString = new NpgsqlConnectionStringBuilder(admin) { Database = name, Pooling = false }.ConnectionString;
            await using (var dataSource = NpgsqlDataSource.Create(connectionString))
            {
                await Migrator.MigrateAsync(dataSource, CancellationToken.None);
            }

            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                try
                {
                    ExecuteAsync(admin, $"DROP DATABASE IF EXISTS {name} WITH (FORCE)").GetAwaiter().GetResult();
                }
                catch (NpgsqlException)
                {
                    // The server may already be gone at exit; nothing to clean then.
                }
            };
            templateName = name;
            return name;
        }
        finally
        {
            TemplateLock.Release();
        }
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
