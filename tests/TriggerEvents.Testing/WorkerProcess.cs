using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace TriggerEvents.Testing;

/// <summary>
/// The real <c>triggerevents</c> executable, started as a process (as an operator runs it),
/// for behaviour that is about processes: signals, crashes, several replicas.
/// </summary>
public sealed class WorkerProcess : IAsyncDisposable
{
    private readonly Process process;
    private readonly ConcurrentQueue<string> output = new();
    private bool disposed;

    private WorkerProcess(Process process, int httpPort)
    {
        this.process = process;
        HttpPort = httpPort;
    }

    public int HttpPort { get; }

    public int Id => process.Id;

    public bool HasExited => process.HasExited;

    public int ExitCode => process.ExitCode;

    /// <summary>Everything the process wrote, stdout and stderr interleaved.</summary>
    public string Output => string.Join('\n', output);

    /// <summary>The repository's root directory (where TriggerEvents.sln is).</summary>
    public static string RepositoryRoot
    {
        get
        {
            var directory = new DirectoryInfo(AppContext.BaseDirectory);
            while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "TriggerEvents.sln")))
            {
                directory = directory.Parent;
            }

            return directory?.FullName ?? throw new InvalidOperationException("Cannot find the repository root above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>
    /// The executable under test: the published native one named by
    /// <c>TRIGGER_EVENTS_TEST_EXECUTABLE</c> (scripts/test.sh sets it: what ships is what is tested),
    /// else the Cli project's <c>triggerevents.dll</c> built in the tests' configuration.
    /// </summary>
    public static string ExecutablePath
    {
        get
        {
            if (Environment.GetEnvironmentVariable("TRIGGER_EVENTS_TEST_EXECUTABLE") is { Length: > 0 } published)
            {
                return File.Exists(published) ? Path.GetFullPath(published) : throw new FileNotFoundException("TRIGGER_EVENTS_TEST_EXECUTABLE names no file: " + published);
            }

            var directory = new DirectoryInfo(RepositoryRoot);
            var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
            var path = Path.Combine(directory.FullName, "src", "TriggerEvents.Cli", "bin", configuration, "net10.0", "triggerevents.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException("Build the solution first: " + path);
        }
    }

    /// <summary>Runs a command to completion: (exit code, stdout, stderr).</summary>
    public static Task<(int ExitCode, string Out, string Error)> RunToEndAsync(
        IReadOnlyDictionary<string, string?> environment, params string[] arguments) =>
        RunToEndInAsync(null, environment, arguments);

    /// <summary>Runs a command to completion in <paramref name="workingDirectory"/> (null: this process's): (exit code, stdout, stderr).</summary>
    public static async Task<(int ExitCode, string Out, string Error)> RunToEndInAsync(
        string? workingDirectory, IReadOnlyDictionary<string, string?> environment, params string[] arguments)
    {
        var start = StartInfo(environment, arguments);
        if (workingDirectory is not null)
        {
            start.WorkingDirectory = workingDirectory;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Starts <c>triggerevents run --config</c>; the YAML's http_port must be <paramref name="httpPort"/>.</summary>
    public static WorkerProcess Start(string databaseUrl, string configPath, int httpPort, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var env = new Dictionary<string, string?>
        {
            ["TRIGGER_EVENTS_DATABASE_URL"] = databaseUrl,
            ["TRIGGER_EVENTS_LOG_FORMAT"] = "text",
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            env[name] = value;
        }

        var process = new Process { StartInfo = StartInfo(env, ["run", "--config", configPath]), EnableRaisingEvents = true };
        var worker = new WorkerProcess(process, httpPort);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { worker.output.Enqueue(e.Data); } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { worker.output.Enqueue(e.Data); } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return worker;
    }

    /// <summary>Starts any command (one that serves no HTTP), to stop or kill it while it runs.</summary>
    public static WorkerProcess StartCommand(IReadOnlyDictionary<string, string?> environment, params string[] arguments)
    {
        var process = new Process { StartInfo = StartInfo(environment, arguments), EnableRaisingEvents = true };
        var command = new WorkerProcess(process, httpPort: 0);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { command.output.Enqueue(e.Data); } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { command.output.Enqueue(e.Data); } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return command;
    }

    /// <summary>Waits until GET /readyz answers 200.</summary>
    public async Task WaitUntilReadyAsync(TimeSpan? timeout = null)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"The worker exited ({process.ExitCode}) before it was ready:\n{Output}");
            }

            try
            {
                using var response = await client.GetAsync(new Uri($"http://127.0.0.1:{HttpPort}/readyz"), deadline.Token);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!deadline.IsCancellationRequested)
            {
                // One slow probe.
            }

            try
            {
                await Task.Delay(50, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"The worker was not ready in time:\n{Output}");
            }
        }
    }

    /// <summary>GET one of the worker's endpoints: (status, body).</summary>
    public async Task<(int Status, string Body)> GetAsync(string path)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var response = await client.GetAsync(new Uri($"http://127.0.0.1:{HttpPort}{path}"));
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// Waits until the worker exits by itself and its output is read to the end (<see cref="HasExited"/>
    /// turns true before the last lines it wrote have arrived); its exit code.
    /// </summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(deadline.Token);
        return process.ExitCode;
    }

    /// <summary>Sends SIGTERM, as a container runtime does, and waits for the exit.</summary>
    public async Task<int> TerminateAsync(TimeSpan? timeout = null)
    {
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(deadline.Token);
        return process.ExitCode;
    }

    /// <summary>SIGKILL: a crash, with no chance to release anything.</summary>
    public async Task KillAsync()
    {
        process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        if (!process.HasExited)
        {
            await KillAsync();
        }

        process.Dispose();
    }

    private static ProcessStartInfo StartInfo(IReadOnlyDictionary<string, string?> environment, string[] arguments)
    {
        var executable = ExecutablePath;
        var managed = executable.EndsWith(".dll", StringComparison.Ordinal);
        var start = new ProcessStartInfo(managed ? "dotnet" : executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (managed)
        {
            start.ArgumentList.Add(executable);
        }

        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        return start;
    }
}
