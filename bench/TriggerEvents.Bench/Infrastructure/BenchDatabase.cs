using Npgsql;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Migrations;

namespace TriggerEvents.Bench.Infrastructure;

/// <summary>
/// One fresh throwaway cluster with one migrated database for a benchmark run. Disposing it
/// stops the server and deletes its directory.
/// </summary>
internal sealed class BenchDatabase : IAsyncDisposable
{
    private readonly LocalCluster cluster;

    private BenchDatabase(LocalCluster cluster, string binDirectory, string name, NpgsqlDataSource dataSource)
    {
        this.cluster = cluster;
        BinDirectory = binDirectory;
        Name = name;
        DataSource = dataSource;
    }

    /// <summary>The server's bin directory, where <c>pgbench</c> is found too.</summary>
    public string BinDirectory { get; }

    public string Name { get; }

    public int Port => cluster.Port;

    /// <summary>CPU time so far of the server's processes.</summary>
    public TimeSpan ServerCpu() => CpuTime.OfServer(cluster.DataDirectory);

    public NpgsqlDataSource DataSource { get; }

    /// <summary>
    /// Starts a cluster with the given extra server settings (<c>name=value</c>), creates
    /// <paramref name="name"/> in it and migrates it to the schema this binary carries.
    /// </summary>
    public static async Task<BenchDatabase> StartAsync(string name, IEnumerable<string> settings, CancellationToken cancellationToken)
    {
        var binDirectory = LocalCluster.FindBinaries() ?? throw new InvalidOperationException(
            "No PostgreSQL server binaries: install them (apt-get install -y postgresql) or set PG_BINDIR.");
        var cluster = await LocalCluster.StartAsync([.. settings])
            ?? throw new InvalidOperationException("No PostgreSQL server binaries found.");
        try
        {
            await using (var admin = NpgsqlDataSource.Create(cluster.AdminConnectionString))
            await using (var create = admin.CreateCommand($"CREATE DATABASE {name}"))
            {
                await create.ExecuteNonQueryAsync(cancellationToken);
            }

            // No command timeout: a setup statement (a million rows captured, twenty thousand
            // jobs enqueued by the peer's trigger) may take longer than Npgsql's 30 s on a busy
            // machine, and the run's own cancellation bounds it anyway.
            var connectionString = new NpgsqlConnectionStringBuilder(cluster.AdminConnectionString) { Database = name, CommandTimeout = 0 }.ConnectionString;
            var dataSource = NpgsqlDataSource.Create(connectionString);
            try
            {
                await Migrator.MigrateAsync(dataSource, cancellationToken);
            }
            catch
            {
                await dataSource.DisposeAsync();
                throw;
            }

            return new BenchDatabase(cluster, binDirectory, name, dataSource);
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    public async Task ExecuteAsync(string sql, CancellationToken cancellationToken)
    {
        await using var command = DataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<T> ScalarAsync<T>(string sql, CancellationToken cancellationToken)
    {
        await using var command = DataSource.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public async ValueTask DisposeAsync()
    {
        await DataSource.DisposeAsync();
        cluster.Dispose();
    }
}
