namespace TriggerEvents.Core.Delivery;

/// <summary>
/// How a target took one attempt, in the terms retries, the circuit breaker and the hold decide
/// by. Nothing here is particular to HTTP: a target maps its protocol's answers onto these
/// (<see cref="WebhookOutcome"/> for webhooks), so another kind of target is a change to that
/// mapping alone.
/// </summary>
internal enum TargetVerdict
{
    /// <summary>The target has the events.</summary>
    Accepted,

    /// <summary>The target failed or could not be reached: tried again, and counted by the breaker.</summary>
    Failed,

    /// <summary>The target answered without taking them: tried again, but no sign of the target's health.</summary>
    Declined,

    /// <summary>The target says the destination is gone for good: never tried again.</summary>
    Gone,

    /// <summary>
    /// The worker refused to send (<c>worker.deny_private_networks</c>): nothing reached the
    /// target, so it says nothing of the target, and every retry would be refused the same way.
    /// </summary>
    Refused,
}

/// <summary>What one attempt came to (see <see cref="TargetVerdict"/>), for <see cref="RetryPolicy.Decide"/>, the breaker and the records.</summary>
/// <param name="Verdict">How the target took it.</param>
/// <param name="Description">One line for a dead-letter reason or a log: <c>HTTP 503</c>, <c>timeout: ...</c>; never a header or secret value.</param>
internal sealed record DeliveryOutcome(TargetVerdict Verdict, string Description)
{
    /// <summary>The target's own status code, kept as the attempt's <c>http_status</c>; null when it gave none.</summary>
    public int? Status { get; init; }

    /// <summary>A short name of the failure for traces (<c>timeout</c>, <c>connection_error</c>, a status code); null on success.</summary>
    public string? ErrorType { get; init; }

    /// <summary>How long the target asked to be left alone before the next attempt, if it did.</summary>
    public TimeSpan? RetryAfter { get; init; }

    /// <summary>The wait it asked for applies to everything sent to it, not only this delivery (an overloaded target).</summary>
    public bool HoldsTarget { get; init; }

    /// <summary>The target refused the request as larger than it takes (a body limit), without taking any of it.</summary>
    public bool IsTooLarge { get; init; }

    /// <summary>The target has the events.</summary>
    public bool IsSuccess => Verdict == TargetVerdict.Accepted;

    /// <summary>The same as <see cref="Description"/>.</summary>
    public string Describe() => Description;
}
