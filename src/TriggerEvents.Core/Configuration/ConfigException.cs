namespace TriggerEvents.Core.Configuration;

/// <summary>
/// The configuration is not usable. Carries every problem found, not just the first, so that one
/// run of <c>triggerevents validate</c> shows them all.
/// </summary>
internal sealed class ConfigException : Exception
{
    /// <summary>Creates the exception; <see cref="Exception.Message"/> is the errors, one per line.</summary>
    public ConfigException(IReadOnlyList<ConfigError> errors)
        : base(string.Join('\n', errors))
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (errors.Count == 0)
        {
            throw new ArgumentException("A configuration exception needs at least one error.", nameof(errors));
        }

        Errors = errors;
    }

    /// <summary>The problems, in the order they appear in the file.</summary>
    public IReadOnlyList<ConfigError> Errors { get; }
}
