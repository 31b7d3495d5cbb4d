using System.Diagnostics;
using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Delivery;

/// <summary>The real <c>triggerevents run</c>, started as a process, with its memory read from /proc.</summary>
internal sealed class WorkerUnderTest : IAsyncDisposable
{
    private readonly Process process;

    private WorkerUnderTest(Process process, int httpPort)
    {
        this.process = process;
        HttpPort = httpPort;
    }

    public int HttpPort { get; }

    /// <summary>CPU time the worker process has used so far.</summary>
    public TimeSpan Cpu => CpuTime.OfProcess(process.Id);

    private bool Ready { get; set; }

    /// <summary>The published native <c>triggerevents</c>; set by <see cref="PublishAsync"/>.</summary>
    public static string ExecutablePath { get; private set; } = "";

    /// <summary>Variables every worker started gets (<c>--worker-env</c>), before a start's own.</summary>
    public static IReadOnlyDictionary<string, string> WorkerEnvironment { get; set; } = new Dictionary<string, string>();

    /// <summary>
    /// Publishes the Cli as it ships (scripts/publish.sh, as deploy/Dockerfile does: Native AOT
    /// for this machine), so the figures are those of the shipped worker.
    /// </summary>
    public static async Task PublishAsync(CancellationToken cancellationToken)
    {
        var root = RepositoryRoot();
        var output = Path.Combine(root, "artifacts", "bench-worker");
        await ProgramRun.ToEndAsync(Path.Combine(root, "scripts", "publish.sh"), [output], directory: null, [], cancellationToken);
        ExecutablePath = Path.Combine(output, "triggerevents");
    }

    /// <summary>The checkout this benchmark was built from.</summary>
    public static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "TriggerEvents.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Run the benchmark from inside the repository.");
    }

    /// <summary>
    /// Starts the worker (<see cref="ExecutablePath"/>, or <paramref name="executable"/>: another
    /// build's), with <paramref name="environment"/> added to (or, for null values, removed from) this process's.
    /// </summary>
    public static async Task<WorkerUnderTest> StartAsync(
        string connectionString, string configPath, int httpPort, CancellationToken cancellationToken, IReadOnlyDictionary<string, string?>? environment = null,
        string? executable = null)
    {
        var start = new ProcessStartInfo(executable ?? ExecutablePath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("run");
        start.ArgumentList.Add("--config");
        start.ArgumentList.Add(configPath);
        start.Environment["TRIGGER_EVENTS_DATABASE_URL"] = connectionString;
        start.Environment["TRIGGER_EVENTS_LOG_FORMAT"] = "json";
        foreach (var (name, value) in WorkerEnvironment)
        {
            start.Environment[name] = value;
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                start.Environment.Remove(name);
            }
            else
            {
                start.Environment[name] = value;
            }
        }

        var process = Process.Start(start)!;
        // Drain the output so the worker never blocks on a full pipe; warnings are echoed.
        process.OutputDataReceived += (_, e) => Echo(e.Data);
        process.ErrorDataReceived += (_, e) => Echo(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var worker = new WorkerUnderTest(process, httpPort);
        try
        {
            await worker.WaitUntilReadyAsync(cancellationToken);
        }
        catch
        {
            await worker.DisposeAsync();
            throw;
        }

        return worker;
    }

    /// <summary>Peak resident memory so far (VmHWM), in MiB.</summary>
    public double PeakMemoryMiB => ReadStatusKiB("VmHWM") / 1024.0;

    /// <summary>Resident memory now (VmRSS), in MiB.</summary>
    public double MemoryMiB => ReadStatusKiB("VmRSS") / 1024.0;

    /// <summary>SIGKILL, as an out-of-memory kill or a lost node ends a worker: nothing is released.</summary>
    public async Task KillAsync()
    {
        if (!process.HasExited)
        {
            process.Kill();
            await process.WaitForExitAsync();
        }
    }

    public async Task StopAsync()
    {
        if (process.HasExited)
        {
            return;
        }

        if (!Ready)
        {
            process.Kill();
            await process.WaitForExitAsync();
            return;
        }

        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        await process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        process.Dispose();
    }

    private static void Echo(string? line)
    {
        if (line is not null && (line.Contains("\"@l\":\"Warning\"", StringComparison.Ordinal) || line.Contains("\"@l\":\"Error\"", StringComparison.Ordinal) || line.Contains("\"@l\":\"Fatal\"", StringComparison.Ordinal)))
        {
            Console.WriteLine($"    worker: {line}");
        }
    }

    private long ReadStatusKiB(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{process.Id}/status"))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan(field.Length + 1).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    private async Task WaitUntilReadyAsync(CancellationToken cancellationToken)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(60));
        while (!process.HasExited)
        {
            try
            {
                using var response = await client.GetAsync(new Uri($"http://127.0.0.1:{HttpPort}/readyz"), deadline.Token);
                if (response.IsSuccessStatusCode)
                {
                    Ready = true;
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!deadline.IsCancellationRequested)
            {
                // One slow answer on a busy machine.
            }

            await Task.Delay(50, deadline.Token);
        }

        throw new InvalidOperationException($"The worker exited ({process.ExitCode}) during start-up.");
    }
}
