using System.Buffers;
using Microsoft.Extensions.Logging;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Worker.Delivery.Targets;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// One attempt end to end: the body made from the claimed event (or a batch's events), sent to
/// the subscription's target, the retry policy's decision, the trace, the metrics and the log,
/// and the result posted to the <see cref="ResultRecorder"/>. Nothing here knows the protocol:
/// the target answers with a <see cref="DeliveryOutcome"/>.
/// </summary>
internal sealed class DeliveryAttempts(
    EventBodies bodies, ResultRecorder recorder, HeldDeliveries held, int runTakeOnRows, WorkerMetrics metrics, TimeProvider time, ILogger logger)
{
    /// <summary>
    /// A run at least this long (as claimed, or as last taken on) is a busy key's: the worker
    /// takes the key on before the run runs out
    /// (<see cref="HeldDeliveries.TakeRunOnAsync"/>), so that its requests go on one after another
    /// instead of pausing at the end of every run for the last result write, the hand-off and the
    /// next claim (bench/README.md, "A busy key's runs taken on"). A shorter run ends as it is: a
    /// statement for every quiet key would cost the database more than the claims it spares.
    /// </summary>
    public const int BusyRun = 16;

    /// <summary>How an attempt ended, as far as what comes after it is concerned.</summary>
    private enum AttemptEnd
    {
        /// <summary>Delivered or dead: its key, if it has one, goes on.</summary>
        Finished,

        /// <summary>To be retried: its key waits behind it.</summary>
        Retry,

        /// <summary>Shutdown cut it short: it stays held, to be released.</summary>
        Stopped,

        /// <summary>Not sent: its lease could not be shown to cover the request (<see cref="HeldDeliveries.CoveredAsync"/>).</summary>
        Unsent,
    }

    /// <summary>Attempts one delivery; <paramref name="state"/> is its hold.</summary>
    public async Task DeliverAsync(ActiveSubscription subscription, ClaimedDelivery delivery, Held state, CancellationToken abort)
    {
        await Task.Yield();
        if (await AttemptAsync(subscription, delivery, state, abort, handsKeyOn: true) == AttemptEnd.Unsent)
        {
            logger.LogWarning(
                "Gave back event {EventId} of {Subscription} unsent: its lease could not be shown to cover the request",
                delivery.Event.Id, subscription.Name);
            await held.GiveBackAsync([(delivery, state)]);
        }
    }

    /// <summary>
    /// While set, a busy key's run takes no more of its key on: it ends with what it holds. Set
    /// while the worker waits for what it has in flight to end before it sends what it took over
    /// from an expired lease (<see cref="DeliveryWorker"/>): a busy run would never end.
    /// </summary>
    public bool TakeOnPaused
    {
        get => Volatile.Read(ref takeOnPaused);
        set => Volatile.Write(ref takeOnPaused, value);
    }

    private bool takeOnPaused;

    /// <summary>
    /// Sends a run of one key's deliveries (<see cref="KeyOrdering.Followers"/>) one after
    /// another in the key's order, each as soon as the one before has its result: delivered or
    /// dead, the key goes on; to be retried, the rest are given back unsent (their attempts
    /// uncounted) and wait behind it. A busy key's run takes the key on before it runs out
    /// (<see cref="BusyRun"/>). The next and the rest are given back too once its lease can no
    /// longer be shown to cover its request (<see cref="HeldDeliveries.CoveredAsync"/>): another
    /// worker may take the run over when they expire, and two requests of the key must never be
    /// in flight. After <paramref name="stopping"/>, no next request starts; the rest stay held,
    /// to be released at shutdown.
    /// </summary>
    public async Task DeliverRunAsync(
        ActiveSubscription subscription, List<(ClaimedDelivery Delivery, Held State)> members, CancellationToken stopping, CancellationToken abort)
    {
        await Task.Yield();
        members.Sort((a, b) => ClaimedDelivery.InKeyOrder(a.Delivery, b.Delivery));
        var next = 0;
        // The key's next deliveries being taken on, held as they arrive; whether the key is busy.
        Task<List<(ClaimedDelivery Delivery, Held State)>>? more = null;
        var busy = members.Count >= BusyRun;
        try
        {
            while (next < members.Count)
            {
                if (next > 0 && stopping.IsCancellationRequested)
                {
                    return;
                }

                // What was taken on joins the run as soon as it is there, so that the next take-on
                // can start a whole take-on's worth of requests ahead of the run's end, not one.
                if (more is { IsCompleted: true })
                {
                    busy = await JoinAsync() >= BusyRun;
                }

                // Once no more than a take-on's worth is left unsent: taking a few hundred on takes
                // the database about as long as sending them does (bench/README.md, "A busy key's
                // runs taken on"), and starting sooner would only hold more of the key under this
                // worker's leases, each with an attempt counted, against a slow target.
                if (busy && more is null && members.Count - next <= runTakeOnRows && !stopping.IsCancellationRequested && !TakeOnPaused)
                {
                    more = held.TakeRunOnAsync(members[^1], runTakeOnRows, subscription.InlineBytes);
                }

                if (next == members.Count - 1 && more is not null)
                {
                    // Whether this one is the key's last for now decides whether its result hands
                    // the key on. The wait may have been long: stop is checked again, and the lease
                    // before the request.
                    busy = await JoinAsync() >= BusyRun;
                    continue;
                }

                var (delivery, state) = members[next++];
                // The run's next member is this worker's, already in flight: only the last one's
                // result hands the key on (KeyOrdering.HandOffSql).
                switch (await AttemptAsync(subscription, delivery, state, abort, handsKeyOn: next == members.Count))
                {
                    case AttemptEnd.Stopped:
                        return;
                    case AttemptEnd.Retry:
                        await JoinAsync();
                        if (next < members.Count)
                        {
                            await held.GiveBackAsync(members[next..]);
                        }

                        return;
                    case AttemptEnd.Unsent:
                        await JoinAsync();
                        logger.LogWarning(
                            "Gave back {Count} deliveries of a key of {Subscription} unsent: the next one's lease could not be shown to cover its request",
                            members.Count - next + 1, subscription.Name);
                        await held.GiveBackAsync(members[(next - 1)..]);
                        return;
                }
            }
        }
        finally
        {
            // What was taken on is held: released at shutdown if it is not sent.
            await JoinAsync();
            for (var i = next; i < members.Count; i++)
            {
                members[i].Delivery.Values?.Return();
            }
        }

        // The deliveries taken on, added to the run; how many.
        async Task<int> JoinAsync()
        {
            if (more is not { } pending)
            {
                return 0;
            }

            more = null;
            var taken = await pending;
            members.AddRange(taken);
            return taken.Count;
        }
    }

    /// <summary>
    /// One attempt to the end, its result posted, unless shutdown cut it short or its lease no
    /// longer covers a request once its body is ready (the caller gives it back).
    /// <paramref name="handsKeyOn"/>: a keyed delivery's result, once finished, makes the next of
    /// its key due.
    /// </summary>
    private async Task<AttemptEnd> AttemptAsync(
        ActiveSubscription subscription, ClaimedDelivery delivery, Held state, CancellationToken abort, bool handsKeyOn)
    {
        RequestBody? body = null;
        try
        {
            // A large event's body waits for room in body_memory and for the database, and a run's
            // member for the ones before it: its lease is checked after that wait.
            body = await bodies.WriteAsync(delivery, subscription.Config, abort);
            var timeout = subscription.Config.Webhook.Timeout;
            if (!held.LeaseCovers(state, timeout) && !await held.CoveredAsync([(delivery, state)], timeout))
            {
                return AttemptEnd.Unsent;
            }

            // From here the receiver may get it: a release at shutdown keeps the attempt counted.
            state.Sent = true;
            using var span = DeliveryTracing.StartAttempt(subscription.Name, delivery, subscription.Target.Destination);
            var attempt = await subscription.Target.SendAsync(
                new TargetMessage(WebhookId.For(delivery.Event.Id, subscription.Name), body, delivery, span), abort);
            var (kind, delay, reason) = Decide(subscription, delivery.Attempt, attempt, span, events: 1);
            if (kind == DeliveryResultKind.Delivered)
            {
                ObserveLatency(subscription, delivery);
            }
            else
            {
                logger.LogWarning(
                    "Delivery of event {EventId} to {Subscription} failed on attempt {Attempt}: {Status} {Error}; {Decision}",
                    delivery.Event.Id, subscription.Name, delivery.Attempt, attempt.Outcome.Status, attempt.Outcome.Describe(),
                    kind == DeliveryResultKind.Dead ? "dead" : $"retry in {delay}");
            }

            recorder.Post(new DeliveryResult(
                delivery.Key, delivery.Attempt, kind, delay, attempt.Outcome.Status, reason,
                attempt.StartedAt, attempt.Duration, attempt.ResponseExcerpt)
            {
                Target = TargetProtection.Signal(subscription.Config, attempt.Outcome),
                Keyed = handsKeyOn && delivery.OrderSeq is not null,
                MayWait = !handsKeyOn && kind != DeliveryResultKind.Retry,
            });
            return kind == DeliveryResultKind.Retry ? AttemptEnd.Retry : AttemptEnd.Finished;
        }
        catch (OperationCanceledException) when (abort.IsCancellationRequested)
        {
            // Shutdown cut the request short: the delivery stays held and is released.
            return AttemptEnd.Stopped;
        }
        catch (UndeliverableEventException e)
        {
            // Too large, gone, or not JSON: every attempt would fail the same way.
            PostDead(subscription, delivery, e.Message, leftOutOfBatch: false, handsKeyOn);
            return AttemptEnd.Finished;
        }
        catch (Exception e)
        {
            // Anything that could not even be attempted (a payload that cannot be built) is a
            // dead letter with the reason: retrying it would fail the same way.
            logger.LogError(e, "Delivery of event {EventId} to {Subscription} could not be attempted", delivery.Event.Id, subscription.Name);
            recorder.Post(Dead(delivery, $"not deliverable: {e.Message}", handsKeyOn));
            return AttemptEnd.Finished;
        }
        finally
        {
            body?.Dispose();
            delivery.Values?.Return();
        }
    }

    /// <summary>
    /// Sends one batch (SPEC "Batches"): its events in event id order, each as its own body
    /// would be; an event that cannot be sent at all (over <c>max_event_bytes</c>, gone from the
    /// log, not JSON) is dead-lettered alone with its reason and left out, and the rest go without
    /// it (so its retries carry the same events under the same id). The outcome is recorded for
    /// every event sent, each with its own attempt; the breaker and Retry-After see it once, as
    /// one request.
    /// </summary>
    public async Task DeliverBatchAsync(ActiveSubscription subscription, List<(ClaimedDelivery Delivery, Held State)> members, CancellationToken abort)
    {
        await Task.Yield();
        var config = subscription.Config;
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
                    PostDead(subscription, delivery, e.Message, leftOutOfBatch: true);
                }
            }

            if (parts.Count == 0)
            {
                return;
            }

            body = BatchBody.Write([.. parts.Select(p => p.Body)]);
            var sending = members.Where(m => !deadAlone.Contains(m.Delivery.Event.Id)).ToList();
            if (!await held.CoveredAsync(sending, config.Webhook.Timeout))
            {
                logger.LogWarning(
                    "Gave back a batch of {Count} events to {Subscription} unsent: the leases of its events could not be shown to cover the request",
                    sending.Count, subscription.Name);
                await held.GiveBackAsync(sending);
                return;
            }

            // From here the receiver may get them: a release at shutdown keeps the attempts counted.
            foreach (var (_, state) in members)
            {
                state.Sent = true;
            }

            var first = parts[0].Delivery;
            var messageId = WebhookId.ForBatch(first.Event.Id, parts.Count, config.Name);
            using var span = DeliveryTracing.StartAttempt(subscription.Name, first, subscription.Target.Destination);
            if (span is { IsAllDataRequested: true })
            {
                span.SetTag(DeliveryTracing.WebhookIdTag, messageId);
                span.SetTag("triggerevents.batch.size", parts.Count);
            }

            var attempt = await subscription.Target.SendAsync(new TargetMessage(messageId, body, first, span), abort);
            if (attempt.Outcome.IsTooLarge && parts.Count > 1)
            {
                Split(subscription, parts.ConvertAll(p => p.Delivery), attempt, messageId, span);
                return;
            }

            // The events of a batch were claimed together every time, so their attempts agree;
            // the most spent decides when the batch is dead.
            var attemptNumber = parts.Max(p => p.Delivery.Attempt);
            var (kind, delay, reason) = Decide(subscription, attemptNumber, attempt, span, parts.Count);
            if (kind != DeliveryResultKind.Delivered)
            {
                logger.LogWarning(
                    "Batch {WebhookId} of {Count} events to {Subscription} failed on attempt {Attempt}: {Status} {Error}; {Decision}",
                    messageId, parts.Count, subscription.Name, attemptNumber, attempt.Outcome.Status, attempt.Outcome.Describe(),
                    kind == DeliveryResultKind.Dead ? "dead" : $"retry in {delay}");
            }

            var signal = TargetProtection.Signal(config, attempt.Outcome);
            for (var i = 0; i < parts.Count; i++)
            {
                var delivery = parts[i].Delivery;
                if (kind == DeliveryResultKind.Delivered)
                {
                    ObserveLatency(subscription, delivery);
                }

                recorder.Post(new DeliveryResult(
                    delivery.Key, delivery.Attempt, kind, delay, attempt.Outcome.Status, reason,
                    attempt.StartedAt, attempt.Duration, attempt.ResponseExcerpt)
                {
                    // One request: the breaker counts it once, and a Retry-After holds the subscription once.
                    Target = i == 0 ? signal : null,
                    WebhookId = messageId,
                    Keyed = delivery.OrderSeq is not null,
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
                if (!deadAlone.Contains(delivery.Event.Id))
                {
                    metrics.Deliveries.WithLabels(subscription.Name, "dead").Inc();
                    recorder.Post(Dead(delivery, why));
                }
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

    /// <summary>
    /// A batch the target refused as too large (a proxy's or server's body limit, which no retry
    /// of the same body gets past) goes again at once as two batches, its first half and the rest,
    /// each under its own webhook-id, with the attempt given back: the target took none of it, so
    /// no receiver has any of these events under the old id. Halves are split again as long as
    /// they are refused; an event refused alone is a failed attempt like any other.
    /// </summary>
    private void Split(ActiveSubscription subscription, List<ClaimedDelivery> sent, AttemptOutcome attempt, string messageId, System.Diagnostics.Activity? span)
    {
        var half = sent.Count / 2;
        var reason = $"{attempt.Outcome.Describe()}: the batch of {sent.Count} events was too large for the target; split into {half} and {sent.Count - half}";
        logger.LogWarning(
            "Batch {WebhookId} of {Count} events to {Subscription} was too large for the target ({Status}); sending it again as batches of {First} and {Rest}",
            messageId, sent.Count, subscription.Name, attempt.Outcome.Status, half, sent.Count - half);
        DeliveryTracing.Finish(span, attempt.Outcome, DeliveryResultKind.Retry);
        metrics.DeliveryDuration.WithLabels(subscription.Name).Observe(attempt.Duration.TotalSeconds);
        metrics.Deliveries.WithLabels(subscription.Name, "retry").Inc(sent.Count);
        for (var i = 0; i < sent.Count; i++)
        {
            var delivery = sent[i];
            recorder.Post(new DeliveryResult(
                delivery.Key, delivery.Attempt, DeliveryResultKind.Retry, TimeSpan.Zero, attempt.Outcome.Status, reason,
                attempt.StartedAt, attempt.Duration, attempt.ResponseExcerpt)
            {
                WebhookId = messageId,
                Keyed = delivery.OrderSeq is not null,
                SplitInto = sent[i < half ? 0 : half].Event.Id,
            });
        }
    }

    /// <summary>
    /// The retry policy's decision on an attempt of <paramref name="events"/> events, recorded on
    /// its span and in the metrics: the result, when to try again, and why.
    /// </summary>
    private (DeliveryResultKind Kind, TimeSpan Delay, string? Reason) Decide(
        ActiveSubscription subscription, int attemptNumber, AttemptOutcome attempt, System.Diagnostics.Activity? span, int events)
    {
        var (kind, delay, reason) = subscription.Policy.Decide(attemptNumber, attempt.Outcome, Random.Shared.NextDouble()) switch
        {
            RetryDecision.Delivered => (DeliveryResultKind.Delivered, TimeSpan.Zero, (string?)null),
            RetryDecision.RetryAfter retry => (DeliveryResultKind.Retry, retry.Delay, attempt.Outcome.Describe()),
            RetryDecision.Dead dead => (DeliveryResultKind.Dead, TimeSpan.Zero, dead.Reason),
            var decision => throw new InvalidOperationException($"Unknown decision {decision}"),
        };
        DeliveryTracing.Finish(span, attempt.Outcome, kind);
        metrics.DeliveryDuration.WithLabels(subscription.Name).Observe(attempt.Duration.TotalSeconds);
        metrics.Deliveries.WithLabels(subscription.Name, kind.ToString().ToLowerInvariant()).Inc(events);
        return (kind, delay, reason);
    }

    /// <summary>Capture to delivery; a replayed or dead-retried event's age is not the pipeline's latency, so it is left out.</summary>
    private void ObserveLatency(ActiveSubscription subscription, ClaimedDelivery delivery)
    {
        if (!delivery.Rescheduled)
        {
            metrics.EndToEndLatency.WithLabels(subscription.Name).Observe((time.GetUtcNow() - delivery.Event.CapturedAt).TotalSeconds);
        }
    }

    private void PostDead(ActiveSubscription subscription, ClaimedDelivery delivery, string reason, bool leftOutOfBatch, bool handsKeyOn = true)
    {
        metrics.Deliveries.WithLabels(subscription.Name, "dead").Inc();
        if (leftOutOfBatch)
        {
            logger.LogWarning("Delivery of event {EventId} to {Subscription} is dead, left out of its batch: {Reason}", delivery.Event.Id, subscription.Name, reason);
        }
        else
        {
            logger.LogWarning("Delivery of event {EventId} to {Subscription} is dead: {Reason}", delivery.Event.Id, subscription.Name, reason);
        }

        recorder.Post(Dead(delivery, reason, handsKeyOn));
    }

    private DeliveryResult Dead(ClaimedDelivery delivery, string reason, bool handsKeyOn = true) =>
        new(delivery.Key, delivery.Attempt, DeliveryResultKind.Dead, TimeSpan.Zero, null, reason, time.GetUtcNow(), TimeSpan.Zero, null)
        {
            Keyed = handsKeyOn && delivery.OrderSeq is not null,
        };
}
