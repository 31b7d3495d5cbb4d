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
internal sealed record ClaimedDelivery(int SubscriptionId, WebhookEvent Event, int Attempt, bool TookOverExpiredLease)
{
    public DeliveryKey Key => new(SubscriptionId, Event.Id);
}

/// <summary>Identifies one delivery: an event for a subscription.</summary>
internal readonly record struct DeliveryKey(int SubscriptionId, long EventId);
