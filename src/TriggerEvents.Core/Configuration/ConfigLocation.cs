namespace TriggerEvents.Core.Configuration;

/// <summary>
/// Where a value was written in the configuration file (1-based line and column), kept on the model
/// so that checks made later, such as "this trigger is not attached", can point at the line too.
/// </summary>
internal sealed record ConfigLocation(string File, int Line, int Column)
{
    /// <summary>An error at this place.</summary>
    public ConfigError Error(string message) => new(File, Line, Column, message);
}
