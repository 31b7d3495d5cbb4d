namespace TriggerEvents.Core.Configuration;

/// <summary>
/// The whole configuration file (SPEC "Configuration"): who receives which events, and how the
/// worker runs. Built only by <see cref="ConfigLoader"/>, which has checked every value.
/// </summary>
internal sealed record TriggerEventsConfig
{
    /// <summary>The subscriptions, in file order; names are unique.</summary>
    public required IReadOnlyList<SubscriptionConfig> Subscriptions { get; init; }

    /// <summary>The <c>worker:</c> section; all defaults when absent.</summary>
    public WorkerConfig Worker { get; init; } = new();

    /// <summary>The <c>retention:</c> section; all defaults when absent.</summary>
    public RetentionConfig Retention { get; init; } = new();

    /// <summary>The file the configuration came from, as given, for messages.</summary>
    public required string SourcePath { get; init; }
}
