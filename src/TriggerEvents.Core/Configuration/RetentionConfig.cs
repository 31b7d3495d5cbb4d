namespace TriggerEvents.Core.Configuration;

/// <summary>
/// <c>retention:</c>: how long the audit log keeps what no longer needs delivering. Write
/// <c>forever</c> to keep something; a null property means exactly that.
/// </summary>
internal sealed record RetentionConfig
{
    /// <summary>Default for <see cref="DeliveredEvents"/> and <see cref="Attempts"/>.</summary>
    public static readonly TimeSpan DefaultRetention = TimeSpan.FromDays(7);

    /// <summary>Default for <see cref="CleanupInterval"/>.</summary>
    public static readonly TimeSpan DefaultCleanupInterval = TimeSpan.FromMinutes(5);

    /// <summary>
    /// <c>delivered_events</c>: events whose deliveries all succeeded are deleted this long after capture;
    /// null keeps them forever. Events with a pending or dead delivery are never deleted by retention.
    /// </summary>
    public TimeSpan? DeliveredEvents { get; init; } = DefaultRetention;

    /// <summary><c>attempts</c>: the record of each delivery attempt is deleted this long after it was made; null keeps it forever.</summary>
    public TimeSpan? Attempts { get; init; } = DefaultRetention;

    /// <summary><c>cleanup_interval</c>: how often the worker runs retention.</summary>
    public TimeSpan CleanupInterval { get; init; } = DefaultCleanupInterval;
}
