using System.Buffers;
using Microsoft.Extensions.Logging;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// Batched subscriptions (<c>batch</c>, SPEC "Batches"): the claim forms the batches and keeps
/// their membership (<see cref="Batches"/>); here each batch is sent as one request, and its one
/// outcome recorded for every event in it.
/// </summary>
internal sealed partial class DeliveryWorker
{
    /// <summary>When a claim last took something or a wake-up came: events may be waiting in a partial batch.</summary>
    private long lastArrival;

    /// <summary>
    /// Requests this worker has going: a batch is one, however many deliveries it holds, so it
    /// takes one slot of <c>worker.concurrency</c> as it takes one of <c>max_in_flight</c>.
    /// </summary>
    private int HeldRequests => anyBatched ? held.Count(h => h.Value.Request) : held.Count;

    /// <summary>How many requests a claim's deliveries make.</summary>
    private static int Requests(IReadOnlyList<ClaimedDelivery> claimed)
    {
        var single = 0;
        HashSet<long>? batches = null;
        foreach (var delivery in claimed)
        {
            if (delivery.BatchId is { } batchId)
            {
                (batches ??= []).Add(batchId);
            }
            else
            {
                single++;
            }
        }

        return single + (batches?.Count ?? 0);
    }

    /// <summary>
    /// The idle wait, shortened to the shortest <c>max_wait</c> while a partial batch may be
    /// waiting to fill: for a while after events last arrived (a claim took some, or capture woke
    /// the worker). The claim sends a partial batch once its oldest event has been due for
    /// <c>max_wait</c>, so it is sent within about max_wait and one such wait. Long after the
    /// last arrival nothing can be waiting, and an idle worker polls at its poll interval again.
    /// </summary>
    private TimeSpan BatchWait(TimeSpan idleWait)
    {
        var shortest = TimeSpan.MaxValue;
        foreach (var subscription in subscriptions)
        {
            if (subscription.Client.Subscription.Batch is { } batch && batch.MaxWait < shortest)
            {
                shortest = batch.MaxWait;
            }
        }

        // A capture's due time is its transaction's start; one that took up to a second to commit
        // is already that much closer to its max_wait when it arrives.
        var window = shortest == TimeSpan.MaxValue ? TimeSpan.Zero : shortest + shortest + TimeSpan.FromSeconds(1);
        return lastArrival != 0 && time.GetElapsedTime(lastArrival) < window && shortest < idleWait ? shortest : idleWait;
    }

    /// <summary>
    /// Sends one batch: its events in event id order, each as its own body would be; an event
    /// that cannot be sent at all (over <c>max_event_bytes</c>, gone from the log, not JSON) is
    /// dead-lettered alone with its reason and left out, and the rest go without it (so its
    /// retries carry the same events under the same id). The outcome is recorded for every event
    /// sent, each with its own attempt; the breaker and Retry-After see it once, as one request.
    /// </summary>
    private async Task DeliverBatchAsync(ActiveSubscription subscription, List<(ClaimedDelivery Delivery, Held State)> members, CancellationToken abort)
    {
        await Task.Yield();
        var config = subscription.Client.Subscription;
        members.Sort((a, b) => a.Delivery.Event.Id.CompareTo(b.Delivery.Event.Id));
        // Each event's body is copied out and let go at once: a batch of large events then holds
        // body_memory for one of them at a time, never waits for room its own events hold.
        var parts = new List<(ClaimedDelivery Delivery, byte[] Body)>(members.Count);
        var deadAlone = new HashSet<long>();
        RequestBody? body = null;
        try
        {
            foreach (var (delivery, _) in members)
            {
                try
                {
                    using var element = await bodies.WriteAsync(delivery, config, abort);
                    var bytes = new byte[element.Length];
                    element.Sequence.CopyTo(bytes);
                    parts.Add((delivery, bytes));
                }
                catch (UndeliverableEventException e)
                {
                    deadAlone.Add(delivery.Event.Id);
                    RecordDeadAlone(subscription, delivery, e.Message);
                }
            }

            if (parts.Count == 0)
            {
                return;
            }

            body = BatchBody.Write([.. parts.Select(p => p.Body)]);

            // From here the receiver may get them: a release at shutdown keeps the attempts counted.
            foreach (var (_, state) in members)
            {
                state.Sent = true;
            }

            var first = parts[0].Delivery;
            var messageId = WebhookId.ForBatch(first.Event.Id, parts.Count, config.Name);
            using var span = DeliveryTracing.StartAttempt(subscription.Name, first, config.Webhook.Url);
            if (span is { IsAllDataRequested: true })
            {
                span.SetTag(DeliveryTracing.WebhookIdTag, messageId);
                span.SetTag("triggerevents.batch.size", parts.Count);
            }

            var attempt = await subscription.Client.SendAsync(first, body, span, messageId, abort);
            // The events of a batch were claimed together every time, so their attempts agree;
            // the most spent decides when the batch is dead.
            var attemptNumber = parts.Max(p => p.Delivery.Attempt);
            var decision = subscription.Policy.Decide(attemptNumber, attempt.Outcome, attempt.RetryAfter, Random.Shared.NextDouble());
            var (kind, delay, reason) = ResultOf(decision, attempt.Outcome);
            DeliveryTracing.Finish(span, attempt.Outcome, kind);
            metrics.DeliveryDuration.WithLabels(subscription.Name).Observe(attempt.Duration.TotalSeconds);
            metrics.Deliveries.WithLabels(subscription.Name, kind.ToString().ToLowerInvariant()).Inc(parts.Count);
            if (kind != DeliveryResultKind.Delivered)
            {
                logger.LogWarning(
                    "Batch {WebhookId} of {Count} events to {Subscription} failed on attempt {Attempt}: {Status} {Error}; {Decision}",
                    messageId, parts.Count, subscription.Name, attemptNumber, attempt.Outcome.StatusCode, attempt.Outcome.Describe(),
                    kind == DeliveryResultKind.Dead ? "dead" : $"retry in {delay}");
            }

            var signal = TargetProtection.Signal(config, attempt.Outcome, attempt.RetryAfter);
            for (var i = 0; i < parts.Count; i++)
            {
                var delivery = parts[i].Delivery;
                if (kind == DeliveryResultKind.Delivered && !delivery.Rescheduled)
                {
                    metrics.EndToEndLatency.WithLabels(subscription.Name).Observe((time.GetUtcNow() - delivery.Event.CapturedAt).TotalSeconds);
                }

                results.Writer.TryWrite(new DeliveryResult(
                    delivery.Key, delivery.Attempt, kind, delay, attempt.Outcome.StatusCode, reason,
                    attempt.StartedAt, attempt.Duration, attempt.ResponseExcerpt)
                {
                    // One request: the breaker counts it once, and a Retry-After holds the subscription once.
                    Target = i == 0 ? signal : null,
                });
            }
        }
        catch (OperationCanceledException) when (abort.IsCancellationRequested)
        {
            // Shutdown cut the request short: the deliveries stay held and are released.
        }
        catch (Exception e)
        {
            // The batch's body could not be made (too large together, or a failure reading or
            // writing an event): every attempt would fail the same way. Each event of the batch
            // without a result yet gets this one, so none stays held.
            var why = e is UndeliverableEventException ? e.Message : $"not deliverable: {e.Message}";
            logger.LogError(e, "A batch of {Count} events to {Subscription} could not be attempted", members.Count, subscription.Name);
            foreach (var (delivery, _) in members)
            {
                if (deadAlone.Contains(delivery.Event.Id))
                {
                    continue;
                }

                metrics.Deliveries.WithLabels(subscription.Name, "dead").Inc();
                results.Writer.TryWrite(new DeliveryResult(
                    delivery.Key, delivery.Attempt, DeliveryResultKind.Dead, TimeSpan.Zero, null, why, time.GetUtcNow(), TimeSpan.Zero, null));
            }
        }
        finally
        {
            body?.Dispose();

            foreach (var (delivery, _) in members)
            {
                delivery.Values?.Return();
            }
        }
    }

    private void RecordDeadAlone(ActiveSubscription subscription, ClaimedDelivery delivery, string reason)
    {
        metrics.Deliveries.WithLabels(subscription.Name, "dead").Inc();
        logger.LogWarning("Delivery of event {EventId} to {Subscription} is dead, left out of its batch: {Reason}", delivery.Event.Id, subscription.Name, reason);
        results.Writer.TryWrite(new DeliveryResult(
            delivery.Key, delivery.Attempt, DeliveryResultKind.Dead, TimeSpan.Zero, null, reason, time.GetUtcNow(), TimeSpan.Zero, null));
    }
}
