using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary>Runs <c>triggerevents</c> as a process against one database.</summary>
internal sealed class Cli(string? databaseUrl)
{
    public async Task<Result> RunAsync(params string[] arguments) => await RunWithAsync(new Dictionary<string, string?>(), arguments);

    public Task<Result> RunWithAsync(Dictionary<string, string?> environment, params string[] arguments) =>
        RunInAsync(null, environment, arguments);

    /// <summary>Runs in <paramref name="workingDirectory"/> (null: the test's), with <paramref name="environment"/> added.</summary>
    public async Task<Result> RunInAsync(string? workingDirectory, Dictionary<string, string?> environment, params string[] arguments)
    {
        if (databaseUrl is not null)
        {
            environment.TryAdd("TRIGGER_EVENTS_DATABASE_URL", databaseUrl);
        }

        environment.TryAdd("TRIGGER_EVENTS_LOG_FORMAT", null);
        var (exitCode, output, error) = await WorkerProcess.RunToEndInAsync(workingDirectory, environment, arguments);
        return new Result(exitCode, output, error);
    }

    public sealed record Result(int ExitCode, string Out, string Error)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout:\n{Out}\nstderr:\n{Error}";
    }
}
