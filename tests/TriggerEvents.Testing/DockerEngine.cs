using System.Diagnostics;

namespace TriggerEvents.Testing;

/// <summary>Whether a Docker engine answers here, so a PostgreSQL container can be started.</summary>
internal static class DockerEngine
{
    public static async Task<bool> AnswersAsync()
    {
        // Only a client may be installed; without a socket or DOCKER_HOST there is no engine to ask.
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
