using System.Diagnostics;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery.Targets;

/// <summary>
/// One request's worth for a target: the body of one event or of a batch, the id receivers
/// deduplicate by, the event whose trace it continues (a batch's first), and the attempt's span
/// (<see cref="DeliveryTracing"/>), null when tracing is off.
/// </summary>
internal sealed record TargetMessage(string Id, RequestBody Body, ClaimedDelivery First, Activity? Span);

/// <summary>What one attempt produced, whatever the target: its outcome, an excerpt of a failure's answer, and when and how long.</summary>
internal sealed record AttemptOutcome(DeliveryOutcome Outcome, string? ResponseExcerpt, DateTimeOffset StartedAt, TimeSpan Duration);

/// <summary>
/// Where a subscription's events go. The delivery path (claims, retries, batches, leases, the
/// breaker) sees only this and the protocol-neutral <see cref="DeliveryOutcome"/>: a webhook is
/// one kind (<see cref="WebhookTarget"/>); a queue or a stream would be another implementation
/// and its mapping of answers to outcomes, and nothing else.
/// </summary>
internal interface IDeliveryTarget : IDisposable
{
    /// <summary>Where it sends, for traces and logs; never a secret.</summary>
    Uri Destination { get; }

    /// <summary>
    /// Sends <paramref name="message"/> once; its body stays the caller's to dispose. Failures
    /// of the target are outcomes, not exceptions; an exception means the attempt could not be made.
    /// </summary>
    Task<AttemptOutcome> SendAsync(TargetMessage message, CancellationToken cancellationToken);
}
