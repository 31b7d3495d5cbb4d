namespace TriggerEvents.Core.Configuration;

/// <summary>
/// <c>batch: {max_events, max_wait}</c>: one request carries up to <see cref="MaxEvents"/> events
/// of the subscription (SPEC "Batches"); a partial batch is sent once its oldest event has been
/// due for <see cref="MaxWait"/>.
/// </summary>
internal sealed record BatchConfig(int MaxEvents, TimeSpan MaxWait)
{
    /// <summary>
    /// The most events of one batch: a claim reads a batch's events in one statement, with
    /// their values (up to 64 KiB each), so it stays a few thousand rows.
    /// </summary>
    public const int MaxMaxEvents = 1000;

    /// <summary>When <c>max_wait</c> is not given.</summary>
    public static readonly TimeSpan DefaultMaxWait = TimeSpan.FromMilliseconds(50);
}
