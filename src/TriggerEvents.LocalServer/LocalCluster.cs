using System.Diagnostics;

namespace TriggerEvents.LocalServer;

/// <summary>
/// A throwaway PostgreSQL cluster in a temporary directory, started from the local server
/// binaries, for the tests, the benchmarks and the demo. The server runs with fsync off: it is
/// for throwaway data only.
/// </summary>
internal sealed class LocalCluster : IDisposable
{
    /// <summary>What a cluster's directory is called, before its owner's process id.</summary>
    internal const string DirectoryPrefix = "triggerevents-pg-";

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

    /// <summary>Starts a cluster, or returns null when no server binaries are installed.</summary>
    public static async Task<LocalCluster?> StartAsync(params string[] settings)
    {
        var bin = FindBinaries();
        if (bin is null)
        {
            return null;
        }

        RemoveAbandoned(Path.GetTempPath());

        // initdb refuses to run as root; the cluster then belongs to the postgres user.
        var runAs = Environment.UserName == "root" ? "postgres" : null;
        var directory = Path.Combine(Path.GetTempPath(), $"{DirectoryPrefix}{Environment.ProcessId}-{Guid.NewGuid():N}"[..48]);
        Directory.CreateDirectory(directory);
        if (runAs is not null)
        {
            await RunAsync("chown", null, runAs, directory);
        }

        var cluster = new LocalCluster(bin, Path.Combine(directory, "data"), Loopback.FreePort(), runAs);
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

    /// <summary>
    /// Deletes the cluster directories under <paramref name="root"/> that nobody uses any more:
    /// their owner process is gone and no server runs in them. A process that is killed, or a
    /// test host that is ended while it deletes its cluster at exit, leaves one behind (about
    /// 100 MB each), and a machine that runs the tests often would fill its disk with them.
    /// </summary>
    internal static void RemoveAbandoned(string root)
    {
        if (!OperatingSystem.IsLinux())
        {
            // Whether a process runs is read from /proc.
            return;
        }

        foreach (var directory in Directory.EnumerateDirectories(root, DirectoryPrefix + "*"))
        {
            var owner = Path.GetFileName(directory)[DirectoryPrefix.Length..].Split('-')[0];
            if (!int.TryParse(owner, out var ownerId) || IsRunning(ownerId) || ServerRunsIn(Path.Combine(directory, "data")))
            {
                continue;
            }

            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Someone else's, or being deleted right now: it is left as it is.
            }
        }
    }

    private static bool ServerRunsIn(string dataDirectory)
    {
        // postmaster.pid's first line is the server's process id; the file goes when it stops.
        var pidFile = Path.Combine(dataDirectory, "postmaster.pid");
        try
        {
            return File.Exists(pidFile) && (!int.TryParse(File.ReadLines(pidFile).FirstOrDefault(), out var serverId) || IsRunning(serverId));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }

    private static bool IsRunning(int processId) => Directory.Exists($"/proc/{processId}");

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
