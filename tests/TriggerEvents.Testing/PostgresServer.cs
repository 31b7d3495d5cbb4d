using System.Diagnostics;
using Npgsql;
using Testcontainers.PostgreSql;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;

namespace TriggerEvents.Testing;

/// <summary>
/// The PostgreSQL server the tests run against, chosen once per test process:
/// <list type="number">
/// <item><c>TRIGGER_EVENTS_TEST_DATABASE</c>, a superuser connection string or URL, when set;</item>
/// <item>else a Testcontainers container, where a Docker engine answers;</item>
/// <item>else a throwaway cluster started from the local PostgreSQL binaries (run as the
/// <c>postgres</c> user when the tests run as root, on a free 127.0.0.1 port).</item>
/// </list>
/// </summary>
public static class PostgresServer
{
    public const string EnvironmentVariable = "TRIGGER_EVENTS_TEST_DATABASE";

    private static readonly SemaphoreSlim StartLock = new(1, 1);
    private static string? adminConnectionString;

    /// <summary>A superuser connection string to the server's <c>postgres</c> database.</summary>
    public static async Task<string> GetAdminConnectionStringAsync()
    {
        if (adminConnectionString is not null)
        {
            return adminConnectionString;
        }

        await StartLock.WaitAsync();
        try
        {
            adminConnectionString ??= await StartAsync();
            return adminConnectionString;
        }
        finally
        {
            StartLock.Release();
        }
    }

    /// <summary>The local cluster, when this process started one (null otherwise).</summary>
    internal static LocalCluster? Cluster { get; private set; }

    private static async Task<string> StartAsync()
    {
        var fromEnvironment = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            return TriggerEvents.Core.Configuration.DatabaseUrl.ToConnectionString(fromEnvironment);
        }

        if (await DockerEngine.AnswersAsync())
        {
            var container = new PostgreSqlBuilder("postgres:15-alpine")
                .WithCommand("-c", "fsync=off", "-c", "max_connections=400")
                .Build();
            await container.StartAsync();
            AppDomain.CurrentDomain.ProcessExit += (_, _) => container.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return new NpgsqlConnectionStringBuilder(container.GetConnectionString()) { Database = "postgres" }.ConnectionString;
        }

        Cluster = await LocalCluster.StartAsync() ?? throw new InvalidOperationException(
            $"No PostgreSQL server for the tests: set {EnvironmentVariable}, start a Docker engine, " +
            "or install PostgreSQL's server binaries (apt-get install -y postgresql).");
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Cluster.Dispose();
        return Cluster.AdminConnectionString;
    }
}
