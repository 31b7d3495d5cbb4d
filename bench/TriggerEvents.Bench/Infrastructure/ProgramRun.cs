using System.Diagnostics;

namespace TriggerEvents.Bench.Infrastructure;

/// <summary>Runs a program to its end, for the setup steps of a benchmark (publishing, installing a peer).</summary>
internal static class ProgramRun
{
    /// <summary>
    /// Runs <paramref name="program"/> in <paramref name="directory"/> with <paramref name="environment"/>
    /// added; throws with its output when it exits non-zero.
    /// </summary>
    public static async Task ToEndAsync(
        string program, IReadOnlyList<string> arguments, string? directory, IReadOnlyList<(string Name, string Value)> environment, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(program, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (directory is not null)
        {
            start.WorkingDirectory = directory;
        }

        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} failed ({process.ExitCode}):\n{await stdout}{await stderr}");
        }
    }
}
