using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Postgres.Delivery;

/// <summary>
/// A delivery this worker holds a lease on: the event, and the attempt this is (the counter
/// rises at claim time, so a crash mid-request still counts the attempt).
/// </summary>
/// <param name="SubscriptionId">The subscription's id in the registry.</param>
/// <param name="Event">The captured event.</param>
/// <param name="Attempt">1 for the first attempt.</param>
/// <param name="TookOverExpiredLease">Another worker held it and let its lease expire.</param>
/// <param name="DueAt">Its <c>next_attempt_at</c> when claimed: with the event id, its place in the queue.</param>
/// <param name="Rescheduled">Replay or dead retry scheduled it again: a redelivery, not the event's first way through.</param>
internal sealed record ClaimedDelivery(int SubscriptionId, WebhookEvent Event, int Attempt, bool TookOverExpiredLease, DateTimeOffset DueAt, bool Rescheduled = false)
{
    public DeliveryKey Key => new(SubscriptionId, Event.Id);
}

/// <summary>What one claim took, and where the next claim resumes.</summary>
internal sealed record ClaimBatch(IReadOnlyList<ClaimedDelivery> Deliveries, ClaimCursor Next);

/// <summary>
/// Which subscriptions a fan-out serves, and how many committed events one call handles at most
/// (it always takes at least one whole transaction, however large).
/// </summary>
internal sealed record FanOutRequest(int[] SubscriptionIds, int MaxEvents);

/// <summary>
/// Where a claim resumes in a subscription's queue of pending deliveries: after the row at
/// (<paramref name="DueAt"/>, <paramref name="EventId"/>), the last one claimed, but no later
/// than a commit window before <paramref name="ClaimedAt"/>, the time of the claim that took it
/// by the database clock.
/// </summary>
internal readonly record struct ClaimCursor(DateTimeOffset DueAt, long EventId, DateTimeOffset ClaimedAt)
{
    /// <summary>From the head of the queue (-infinity): before every row.</summary>
    public static ClaimCursor Sweep { get; } = new(DateTimeOffset.MinValue, 0, DateTimeOffset.MinValue);

    /// <summary>
    /// The cursor after a claim at <paramref name="claimedAt"/>: the last pending row it took, or
    /// the same row if it took none.
    /// </summary>
    public ClaimCursor After(IReadOnlyList<ClaimedDelivery> claimed, DateTimeOffset claimedAt)
    {
        var after = this with { ClaimedAt = claimedAt };
        foreach (var delivery in claimed)
        {
            if (!delivery.TookOverExpiredLease &&
                (delivery.DueAt, delivery.Event.Id).CompareTo((after.DueAt, after.EventId)) > 0)
            {
                after = after with { DueAt = delivery.DueAt, EventId = delivery.Event.Id };
            }
        }

        return after;
    }
}

/// <summary>Identifies one delivery: an event for a subscription.</summary>
internal readonly record struct DeliveryKey(int SubscriptionId, long EventId);
