namespace TriggerEvents.Core.Delivery;

/// <summary>What becomes of a delivery after an attempt: see <see cref="RetryPolicy.Decide"/>.</summary>
internal abstract record RetryDecision
{
    private RetryDecision()
    {
    }

    /// <summary>The receiver answered 2xx; the delivery is done.</summary>
    public sealed record Delivered : RetryDecision;

    /// <summary>No more attempts: the delivery becomes a dead letter, <paramref name="Reason"/> saying why.</summary>
    public sealed record Dead(string Reason) : RetryDecision;

    /// <summary>Try again once <paramref name="Delay"/> has passed.</summary>
    public sealed record RetryAfter(TimeSpan Delay) : RetryDecision;
}
