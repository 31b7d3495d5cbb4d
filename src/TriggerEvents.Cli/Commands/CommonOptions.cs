using System.CommandLine;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Cli.Commands;

/// <summary>Options shared by several commands.</summary>
internal static class CommonOptions
{
    public static Option<string?> Config() => new("--config", "-c")
    {
        Description = "The YAML file (default: TRIGGER_EVENTS_CONFIG, else triggerevents.yaml).",
    };

    public static Option<bool> Json() => new("--json") { Description = "Print JSON for scripts." };

    /// <summary>Loads the configuration named by --config, TRIGGER_EVENTS_CONFIG or the default.</summary>
    public static TriggerEventsConfig LoadConfig(string? path)
    {
        path ??= Environment.GetEnvironmentVariable("TRIGGER_EVENTS_CONFIG") ?? "triggerevents.yaml";
        if (!File.Exists(path))
        {
            throw new UsageException($"configuration file {path} not found (use --config or TRIGGER_EVENTS_CONFIG)");
        }

        return ConfigLoader.Load(path, Environment.GetEnvironmentVariable);
    }
}
