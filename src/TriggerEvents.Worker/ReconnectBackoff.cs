namespace TriggerEvents.Worker;

/// <summary>
/// How long to wait before talking to the database again after <c>failures</c> failures in a
/// row: 100 ms, doubling, capped. Shared by the claim loop, the recorder, the listener and
/// start-up, so an outage is retried the same way everywhere.
/// </summary>
internal static class ReconnectBackoff
{
    /// <summary>The longest wait: an outage that ends is noticed within this.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromSeconds(5);

    public static TimeSpan Delay(int failures) =>
        TimeSpan.FromMilliseconds(Math.Min(Max.TotalMilliseconds, 100 * Math.Pow(2, Math.Clamp(failures - 1, 0, 10))));
}
