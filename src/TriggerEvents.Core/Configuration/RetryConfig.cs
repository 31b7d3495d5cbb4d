namespace TriggerEvents.Core.Configuration;

/// <summary>
/// <c>retry:</c> of a subscription: how often and how far apart a failed delivery is tried again
/// (exponential backoff with full jitter, see <see cref="Delivery.RetryPolicy"/>).
/// </summary>
internal sealed record RetryConfig
{
    /// <summary>Default for <see cref="MaxAttempts"/>.</summary>
    public const int DefaultMaxAttempts = 10;

    /// <summary>Default for <see cref="InitialInterval"/>.</summary>
    public static readonly TimeSpan DefaultInitialInterval = TimeSpan.FromSeconds(5);

    /// <summary>Default for <see cref="MaxInterval"/>.</summary>
    public static readonly TimeSpan DefaultMaxInterval = TimeSpan.FromHours(1);

    /// <summary><c>max_attempts</c>: attempts in all, the first included (at least 1); then the delivery is dead.</summary>
    public int MaxAttempts { get; init; } = DefaultMaxAttempts;

    /// <summary><c>initial_interval</c>: the backoff ceiling after the first failure; it doubles with each further one.</summary>
    public TimeSpan InitialInterval { get; init; } = DefaultInitialInterval;

    /// <summary><c>max_interval</c>: the most any wait can be, a <c>Retry-After</c> included; at least <see cref="InitialInterval"/>.</summary>
    public TimeSpan MaxInterval { get; init; } = DefaultMaxInterval;
}
