using System.CommandLine;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Cli.Commands;

/// <summary>Where the configuration file was found, and what named it (for messages).</summary>
internal sealed record ConfigPath(string Path, string NamedBy)
{
    /// <summary>True when the file was named on purpose (--config or the variable), not the default name.</summary>
    public bool Explicit => NamedBy != CommonOptions.DefaultSource;
}

/// <summary>Options shared by several commands.</summary>
internal static class CommonOptions
{
    /// <summary>The variable that names the configuration file when --config is not given.</summary>
    public const string ConfigVariable = "TRIGGER_EVENTS_CONFIG";

    /// <summary>How messages say the file was found by its default name.</summary>
    public const string DefaultSource = "the default name in the working directory";

    public static Option<string?> Config() => new("--config", "-c")
    {
        Description = $"The YAML file (default: {ConfigVariable}, else ./{ConfigLoader.DefaultFileName}).",
    };

    public static Option<bool> Json() => new("--json") { Description = "Print JSON for scripts." };

    /// <summary>
    /// The file every command reads the same way: --config, else <c>TRIGGER_EVENTS_CONFIG</c>, else
    /// <c>./triggerevents.yaml</c>. An empty variable counts as unset, as a container spec that
    /// blanks it means.
    /// </summary>
    public static ConfigPath ResolveConfig(string? flag)
    {
        if (!string.IsNullOrEmpty(flag))
        {
            return new ConfigPath(flag, "--config");
        }

        return Environment.GetEnvironmentVariable(ConfigVariable) is { Length: > 0 } fromVariable
            ? new ConfigPath(fromVariable, ConfigVariable)
            : new ConfigPath(ConfigLoader.DefaultFileName, DefaultSource);
    }

    /// <summary>Loads the configuration named by --config, TRIGGER_EVENTS_CONFIG or the default.</summary>
    public static TriggerEventsConfig LoadConfig(string? flag) => LoadConfig(ResolveConfig(flag));

    /// <summary>Loads the configuration at <paramref name="path"/>, or a usage error saying what named the missing file.</summary>
    public static TriggerEventsConfig LoadConfig(ConfigPath path)
    {
        if (!File.Exists(path.Path) && !Directory.Exists(path.Path))
        {
            throw new UsageException(path.Explicit
                ? $"configuration file {path.Path} (from {path.NamedBy}) not found"
                : $"configuration file ./{ConfigLoader.DefaultFileName} not found: give --config or set {ConfigVariable}");
        }

        return ConfigLoader.Load(path.Path, Environment.GetEnvironmentVariable);
    }
}
