using System.CommandLine;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Cli.Commands;

/// <summary>
/// <c>triggerevents healthcheck</c>: asks the worker running beside it whether it is alive, on the
/// port its configuration gives, so a container's HEALTHCHECK follows <c>worker.http_port</c>.
/// </summary>
internal static class HealthcheckCommand
{
    public static Command Create()
    {
        var config = CommonOptions.Config();
        var command = new Command("healthcheck", $"""
            Check that the worker on this machine is alive: GET /healthz on 127.0.0.1 at the
            worker.http_port of the configuration (found as 'run' finds it: --config, else
            {CommonOptions.ConfigVariable}, else ./{ConfigLoader.DefaultFileName}). Exits 0 when it
            answers 200, else 1. The container image's HEALTHCHECK runs it.

            Examples:
              triggerevents healthcheck
              triggerevents healthcheck --config triggerevents.yaml
            """)
        {
            config,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            var loaded = CommonOptions.LoadConfig(parse.GetValue(config));
            var url = new Uri($"http://127.0.0.1:{loaded.Worker.HttpPort}/healthz");
            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(3) };
            try
            {
                using var response = await client.GetAsync(url, cancellationToken);
                var body = (await response.Content.ReadAsStringAsync(cancellationToken)).Trim();
                if (response.IsSuccessStatusCode)
                {
                    Console.WriteLine($"{url}: {body}");
                    return ExitCodes.Done;
                }

                await Console.Error.WriteLineAsync($"triggerevents: {url} answered {(int)response.StatusCode}: {body}");
                return ExitCodes.Failed;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                await Console.Error.WriteLineAsync($"triggerevents: no worker answers at {url} ({e.Message})");
                return ExitCodes.Failed;
            }
        }));
        return command;
    }
}
