using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;
using Testcontainers.PostgreSql;

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
    public static LocalCluster? Cluster { get; private set; }

    private static async Task<string> StartAsync()
    {
        var fromEnvironment = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            return fromEnvironment; // converted by DatabaseUrl once Core has it
        }

        if (await DockerAnswersAsync())
        {
            var container = new PostgreSqlBuilder("postgres:15-alpine")
                .WithCommand("-c", "fsync=off", "-c", "max_connections=400")
                .Build();
            await container.StartAsync();
            AppDomain.CurrentDomain.ProcessExit += (_, _) => container.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return new NpgsqlConnectionStringBuilder(container.GetConnectionString()) { Database = "postgres" }.ConnectionString;
        }

        Cluster = await LocalCluster.StartAsync();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Cluster.Dispose();
        return Cluster.AdminConnectionString;
    }

    private static async Task<bool> DockerAnswersAsync()
    {
        if (!File.Exists("/var/run/docker.sock") && Environment.GetEnvironmentVariable("DOCKER_HOST") is null)
        {
            return false;
        }

        try
        {
            using var process = Process.Start(new ProcessStartInfo("docker", "info")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            });
            if (process is null)
            {
                return false;
            }

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            await process.WaitForExitAsync(timeout.Token);
            return process.ExitCode == 0;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or OperationCanceledException)
        {
            return false;
        }
    }
}

/// <summary>
/// A throwaway PostgreSQL cluster in a temporary directory, started from the local server
/// binaries. Also used by the benchmarks and the demo's tests.
/// </summary>
public sealed class LocalCluster : IDisposable
{
    private readonly string binDirectory;
    private readonly string? runAs;

    private LocalCluster(string binDirectory, string dataDirectory, int port, string? runAs)
    {
        this.binDirectory = binDirectory;
        DataDirectory = dataDirectory;
        Port = port;
        this.runAs = runAs;
    }

    public string DataDirectory { get; }

    public int Port { get; }

    public string AdminConnectionString =>
        $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres;Pooling=true;Maximum Pool Size=200;Include Error Detail=true";

    /// <summary>The newest installed server's bin directory, or null.</summary>
    public static string? FindBinaries()
    {
        var fromPath = Environment.GetEnvironmentVariable("PG_BINDIR");
        if (fromPath is not null && File.Exists(Path.Combine(fromPath, "initdb")))
        {
            return fromPath;
        }

        const string debianRoot = "/usr/lib/postgresql";
        if (!Directory.Exists(debianRoot))
        {
            return null;
        }

        return Directory.GetDirectories(debianRoot)
            .Select(d => Path.Combine(d, "bin"))
            .Where(d => File.Exists(Path.Combine(d, "initdb")))
            .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : 0)
            .FirstOrDefault();
    }

    public static async Task<LocalCluster> StartAsync(params string[] settings)
    {
        var bin = FindBinaries() ?? throw new InvalidOperationException(
            $"No PostgreSQL server found: set {PostgresServer.EnvironmentVariable}, start a Docker engine, " +
            "or install PostgreSQL's server binaries (apt-get install -y postgresql).");

        // initdb refuses to run as root; the cluster then belongs to the postgres user.
        var runAs = Environment.UserName == "root" ? "postgres" : null;
        var directory = Path.Combine(Path.GetTempPath(), $"triggerevents-pg-{Environment.ProcessId}-{Guid.NewGuid():N}"[..48]);
        Directory.CreateDirectory(directory);
        if (runAs is not null)
        {
            await RunAsync("chown", null, runAs, directory);
        }

        var cluster = new LocalCluster(bin, Path.Combine(directory, "data"), FreePort(), runAs);
        await RunAsync(Path.Combine(bin, "initdb"), runAs, "-D", cluster.DataDirectory, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C");
        var options = string.Join(' ', new[]
        {
            $"-p {cluster.Port}", $"-k {directory}", "-c listen_addresses=127.0.0.1",
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=300",
        }.Concat(settings.Select(s => $"-c {s}")));
        await RunAsync(Path.Combine(bin, "pg_ctl"), runAs, "-D", cluster.DataDirectory, "-o", options, "-l", Path.Combine(directory, "server.log"), "-w", "start");
        return cluster;
    }

    /// <summary>Restarts the server, as <c>pg_ctl restart -m fast|immediate</c> does.</summary>
    public Task RestartAsync(string mode = "fast") =>
        RunAsync(Path.Combine(binDirectory, "pg_ctl"), runAs, "-D", DataDirectory, "-m", mode, "-w", "restart");

    public void Dispose()
    {
        try
        {
            RunAsync(Path.Combine(binDirectory, "pg_ctl"), runAs, "-D", DataDirectory, "-m", "immediate", "-w", "stop").GetAwaiter().GetResult();
        }
        catch (InvalidOperationException)
        {
            // Already stopped.
        }

        try
        {
            Directory.Delete(Path.GetDirectoryName(DataDirectory)!, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temporary directory is harmless.
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task RunAsync(string file, string? runAs, params string[] arguments)
    {
        var start = runAs is null ? new ProcessStartInfo(file) : new ProcessStartInfo("runuser", ["-u", runAs, "--", file]);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {file}.");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} failed ({process.ExitCode}): {await error}{await output}");
        }
    }
}
