using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Worker.Signals;

namespace TriggerEvents.Worker.Delivery;

/// <summary>A subscription the worker delivers: its registry id, its client and its retry policy.</summary>
internal sealed record ActiveSubscription(int Id, WebhookClient Client, RetryPolicy Policy)
{
    public string Name => Client.Subscription.Name;
}

/// <summary>
/// The hot path: claim due deliveries under a lease, post them, record the results.
/// </summary>
/// <remarks>
/// Claims are short statements that commit before any request starts, so no row lock is held
/// across HTTP (SKIP LOCKED keeps replicas apart). Results go through a channel to one
/// recorder that writes them in batches, only where this worker's lease still holds. A second
/// loop extends the leases of deliveries still in progress. NOTIFY only shortens the wait:
/// the loop polls every <c>poll_interval</c> whatever happens to LISTEN.
/// </remarks>
internal sealed partial class DeliveryWorker
{
    private const int MaxResultsPerWrite = 1000;
    private const int ShutdownRecordAttempts = 5;

    /// <summary>
    /// The least time from the start of one claim of a drained queue to the next, and from the
    /// start of one result write to the next while results are few: a statement per handful of
    /// rows cost the database more per event than the one it serves. Counted from the start, a
    /// claim or write that took longer has already gathered, and the next one starts at once (a
    /// millisecond's sleep took two and a half under load).
    /// </summary>
    private static readonly TimeSpan GatherWait = TimeSpan.FromMilliseconds(1);

    /// <summary>Poll intervals between sweeps of a subscription's queue from its head.</summary>
    private const int SweepPollIntervals = 10;

    /// <summary>
    /// Committed events one fan-out turns into deliveries at most, in claim batches: enough for
    /// the claims of the rounds until the queue runs low again, few enough that a backlog in the
    /// log is not all turned into delivery rows ahead of the claims.
    /// </summary>
    private const int FanOutBatches = 4;

    private readonly WorkerConfig options;
    private readonly IReadOnlyList<ActiveSubscription> subscriptions;

    /// <summary>Whether any subscription sends batches: only then do held deliveries and requests differ.</summary>
    private readonly bool anyBatched;
    private readonly DeliveryStore store;
    private readonly WakeSignal wake;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly WorkerMetrics metrics;
    private readonly ConcurrentDictionary<DeliveryKey, Held> held = new();
    private readonly Channel<DeliveryResult> results = Channel.CreateUnbounded<DeliveryResult>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Dictionary<int, ClaimState> claimStates = [];
    private readonly FanOutRequest fanOutRequest;
    private readonly EventBodies bodies;
    private readonly TargetProtection protection;
    private bool fanOutDue = true;
    private long lastFanOut;
    private bool idleSignalled;

    /// <summary>Free slots worth a claim round trip while deliveries are in progress.</summary>
    private int RefillThreshold => Math.Max(1, Math.Min(options.BatchSize, options.Concurrency) / 4);

    public DeliveryWorker(
        WorkerConfig options, IReadOnlyList<ActiveSubscription> subscriptions, DeliveryStore store,
        WakeSignal wake, TimeProvider time, ILogger logger, WorkerMetrics metrics)
    {
        this.options = options;
        this.subscriptions = subscriptions;
        anyBatched = subscriptions.Any(s => s.Client.Subscription.Batch is not null);
        this.store = store;
        this.wake = wake;
        this.time = time;
        this.logger = logger;
        this.metrics = metrics;
        fanOutRequest = new FanOutRequest([.. subscriptions.Select(s => s.Id)], FanOutBatches * options.BatchSize);
        bodies = new EventBodies(store, new BodyMemory(options.BodyMemory), time);
        protection = new TargetProtection(subscriptions, time, metrics, logger);
    }

    /// <summary>This worker's lease owner token.</summary>
    public Guid Owner { get; } = Guid.NewGuid();

    /// <summary>When the claim loop last went round: <c>/healthz</c> reads it.</summary>
    public DateTimeOffset LastLoopAt { get; private set; } = DateTimeOffset.MinValue;

    /// <summary>
    /// Runs until <paramref name="stopping"/> is cancelled, then stops claiming, lets requests in
    /// flight finish for up to <c>shutdown_timeout</c>, records what finished and releases the rest.
    /// </summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        using var abort = new CancellationTokenSource();
        var requests = new ConcurrentDictionary<Task, byte>();
        var recorder = Task.Run(() => RecordLoopAsync(CancellationToken.None), CancellationToken.None);
        using var leaseLoopStop = new CancellationTokenSource();
        var leaseLoop = Task.Run(() => ExtendLeasesLoopAsync(leaseLoopStop.Token), CancellationToken.None);
        var failures = 0;
        LastLoopAt = time.GetUtcNow();

        while (!stopping.IsCancellationRequested)
        {
            try
            {
                var roundStarted = time.GetTimestamp();
                var (claimed, drained) = await ClaimRoundAsync(requests, abort.Token, stopping);
                failures = 0;
                LastLoopAt = time.GetUtcNow();
                if (claimed > 0)
                {
                    lastArrival = time.GetTimestamp();
                    if (idleSignalled)
                    {
                        await store.SetIdleAsync(false, stopping);
                        idleSignalled = false;
                    }

                    var gatherLeft = GatherLeft(roundStarted);
                    if (drained && gatherLeft > TimeSpan.Zero)
                    {
                        // Everything due was taken: let a few more events arrive than one or two.
                        await Task.Delay(gatherLeft, time, stopping);
                    }

                    await WaitForFreeSlotsAsync(stopping);
                    continue;
                }

                if (held.IsEmpty)
                {
                    // Tell capture to send a wake-up. The flag may be off although this worker
                    // set it: the first capture after it takes it as it notifies (migration
                    // 000003), and a claim that then found nothing (another replica took the
                    // event) must arm it again. When it was off, look once more: an event
                    // committed between the empty claim and the flip would otherwise wait for
                    // the next poll.
                    var armed = await store.SetIdleAsync(true, stopping);
                    idleSignalled = true;
                    if (armed)
                    {
                        continue;
                    }
                }

                // A subscription held back until a known time (rate limit, open circuit,
                // Retry-After) is claimed again then, not a poll interval later.
                // A partial batch waiting to fill is claimed again within its max_wait.
                if (await wake.WaitAsync(BatchWait(protection.IdleWait(options.PollInterval)), stopping))
                {
                    lastArrival = time.GetTimestamp();
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
            {
                // The database went away (restart, failover, terminated backend). Nothing held is
                // lost: leases expire, results wait in the channel. Back off and try again.
                failures++;
                var delay = ReconnectBackoff.Delay(failures);
                logger.LogWarning("Claiming failed ({Failures} in a row), retrying in {Delay}: {Error}", failures, delay, e.Message);
                LastLoopAt = time.GetUtcNow();
                try
                {
                    await Task.Delay(delay, time, stopping);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

        logger.LogInformation("Stopping: {Requests} requests in flight, waiting up to {Timeout}", requests.Count, options.ShutdownTimeout);
        var inFlight = Task.WhenAll(requests.Keys);
        if (await Task.WhenAny(inFlight, Task.Delay(options.ShutdownTimeout, time)) != inFlight)
        {
            await abort.CancelAsync();
            await Task.WhenAll(requests.Keys).ContinueWith(_ => { }, TaskScheduler.Default);
        }

        results.Writer.Complete();
        await recorder;
        await leaseLoopStop.CancelAsync();
        await leaseLoop;

        // What is still held was claimed but never attempted to the end: give it back, with its
        // attempt if its request never started (it may have waited for room in body_memory).
        var unfinished = HeldLeases();
        if (unfinished.Count > 0)
        {
            try
            {
                await store.ReleaseAsync(Owner, unfinished, CancellationToken.None);
                logger.LogInformation("Released {Count} deliveries for other workers", unfinished.Count);
            }
            catch (NpgsqlException e)
            {
                logger.LogWarning("Could not release {Count} deliveries; their leases will expire: {Error}", unfinished.Count, e.Message);
            }
        }
    }

    /// <summary>
    /// Waits until a useful batch fits (recorded results free slots and set the wake signal), or
    /// one poll interval, so slots held by slow requests cannot keep the rest from being used.
    /// </summary>
    private async Task WaitForFreeSlotsAsync(CancellationToken stopping)
    {
        var started = time.GetTimestamp();
        while (options.Concurrency - HeldRequests < RefillThreshold)
        {
            var remaining = options.PollInterval - time.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero || !await wake.WaitAsync(remaining, stopping))
            {
                return;
            }
        }
    }

    /// <summary>
    /// One pass over the subscriptions: how many deliveries were claimed, and whether a claim took
    /// fewer than it asked for (its queue is drained for now).
    /// </summary>
    /// <remarks>
    /// The round's first claim starts with the fan-out of every subscription of this worker: the
    /// events committed since each one's place in the log become deliveries, in the same round
    /// trip, so the claim behind it can take them at once. It runs when the previous round
    /// drained a queue, and at least once a poll interval: while claims still find work, what it
    /// made before is enough.
    /// Each subscription's claim resumes after the last row it took (<see cref="ClaimCursor"/>).
    /// Once per poll interval a claim also takes over expired leases (a short read of the lease
    /// index). Once per <see cref="SweepPollIntervals"/> poll intervals it starts from the head of
    /// the queue instead, finding what cursor claims passed by (a transaction that committed
    /// long after it captured). A sweep walks every entry claimed since the table's last vacuum,
    /// which took up to a quarter of a second under load: too long to do every second.
    /// </remarks>
    private async Task<(int Claimed, bool Drained)> ClaimRoundAsync(ConcurrentDictionary<Task, byte> requests, CancellationToken abort, CancellationToken stopping)
    {
        var claimedTotal = 0;
        var drained = false;
        var fanOut = fanOutDue || IsDue(ref lastFanOut, options.PollInterval) ? fanOutRequest : null;
        if (fanOut is not null)
        {
            lastFanOut = time.GetTimestamp();
        }

        foreach (var subscription in subscriptions)
        {
            // A slot is taken from claim until the result is recorded: the database counts the
            // delivery in flight for max_in_flight until then, so the worker does the same.
            var free = options.Concurrency - HeldRequests;
            if (free <= 0)
            {
                break;
            }

            var limit = Math.Min(options.BatchSize, free);
            if (!protection.MayClaim(subscription.Id))
            {
                // Its last claim said it can take nothing until a known time: no round trip before.
                continue;
            }

            if (!claimStates.TryGetValue(subscription.Id, out var state))
            {
                claimStates[subscription.Id] = state = new ClaimState();
            }

            var takeOver = IsDue(ref state.LastTakeOver, options.PollInterval);
            var cursor = IsDue(ref state.LastSweep, options.PollInterval * SweepPollIntervals) ? ClaimCursor.Sweep : state.Cursor;
            var claimBatch = await store.ClaimAsync(
                subscription.Id, Owner, limit, options.Lease, cursor, takeOver, fanOut,
                (int)Math.Min(DeliveryStore.InlineEventBytes, subscription.Client.Subscription.MaxEventBytes), stopping);
            var (claimed, next) = claimBatch;
            protection.Claimed(subscription, claimBatch.Protection);
            fanOut = null;
            state.Cursor = next;
            claimedTotal += claimed.Count;
            drained |= Requests(claimed) < limit;
            var batches = new Dictionary<long, List<(ClaimedDelivery, Held)>>();
            foreach (var delivery in claimed)
            {
                if (delivery.TookOverExpiredLease)
                {
                    metrics.LeasesExpired.Inc();
                }

                if (delivery.DeadAtClaim is { } reason)
                {
                    // Its attempts were spent without a result: the claim dead-lettered it.
                    metrics.Deliveries.WithLabels(subscription.Name, "dead").Inc();
                    logger.LogWarning(
                        "Delivery of event {EventId} to {Subscription} is dead: {Reason}", delivery.Event.Id, subscription.Name, reason);
                    continue;
                }

                // A delivery this worker still holds under an older attempt (it took its own
                // expired lease over) counts once: the older request ends within its timeout,
                // and its result no longer applies.
                var holding = new Held(delivery.Attempt);
                held[delivery.Key] = holding;
                if (delivery.BatchId is { } batchId)
                {
                    // Sent with the rest of its batch, below; the batch's first holds its slot.
                    holding.Request = !batches.ContainsKey(batchId);
                    batches.TryAdd(batchId, []);
                    batches[batchId].Add((delivery, holding));
                    continue;
                }

                var request = DeliverAsync(subscription, delivery, holding, abort);
                requests[request] = 0;
                _ = request.ContinueWith(t => requests.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }

            foreach (var members in batches.Values)
            {
                var request = DeliverBatchAsync(subscription, members, abort);
                requests[request] = 0;
                _ = request.ContinueWith(t => requests.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }

        fanOutDue = drained;
        return (claimedTotal, drained);
    }

    /// <summary>What is left of <see cref="GatherWait"/> since a claim or write started at <paramref name="startedAt"/>.</summary>
    private TimeSpan GatherLeft(long startedAt) => GatherWait - time.GetElapsedTime(startedAt);

    /// <summary>True, and restarts the period, when <paramref name="every"/> has passed since <paramref name="last"/> (or never ran).</summary>
    private bool IsDue(ref long last, TimeSpan every)
    {
        if (last != 0 && time.GetElapsedTime(last) < every)
        {
            return false;
        }

        last = time.GetTimestamp();
        return true;
    }

    private async Task DeliverAsync(ActiveSubscription subscription, ClaimedDelivery delivery, Held state, CancellationToken abort)
    {
        await Task.Yield();
        RequestBody? body = null;
        try
        {
            body = await bodies.WriteAsync(delivery, subscription.Client.Subscription, abort);
            // From here the receiver may get it: a release at shutdown keeps the attempt counted.
            state.Sent = true;
            using var span = DeliveryTracing.StartAttempt(subscription.Name, delivery, subscription.Client.Subscription.Webhook.Url);
            var attempt = await subscription.Client.SendAsync(delivery, body, span, abort);
            var decision = subscription.Policy.Decide(delivery.Attempt, attempt.Outcome, attempt.RetryAfter, Random.Shared.NextDouble());
            var (kind, delay, reason) = ResultOf(decision, attempt.Outcome);
            DeliveryTracing.Finish(span, attempt.Outcome, kind);
            metrics.DeliveryDuration.WithLabels(subscription.Name).Observe(attempt.Duration.TotalSeconds);
            metrics.Deliveries.WithLabels(subscription.Name, kind.ToString().ToLowerInvariant()).Inc();
            if (kind == DeliveryResultKind.Delivered)
            {
                // A replayed or dead-retried event's age is not the pipeline's latency: left out.
                if (!delivery.Rescheduled)
                {
                    metrics.EndToEndLatency.WithLabels(subscription.Name).Observe((time.GetUtcNow() - delivery.Event.CapturedAt).TotalSeconds);
                }
            }
            else
            {
                logger.LogWarning(
                    "Delivery of event {EventId} to {Subscription} failed on attempt {Attempt}: {Status} {Error}; {Decision}",
                    delivery.Event.Id, subscription.Name, delivery.Attempt, attempt.Outcome.StatusCode, attempt.Outcome.Describe(),
                    kind == DeliveryResultKind.Dead ? "dead" : $"retry in {delay}");
            }

            results.Writer.TryWrite(new DeliveryResult(
                delivery.Key, delivery.Attempt, kind, delay, attempt.Outcome.StatusCode, reason,
                attempt.StartedAt, attempt.Duration, attempt.ResponseExcerpt)
            {
                Target = TargetProtection.Signal(subscription.Client.Subscription, attempt.Outcome, attempt.RetryAfter),
            });
        }
        catch (OperationCanceledException) when (abort.IsCancellationRequested)
        {
            // Shutdown cut the request short: the delivery stays held and is released.
        }
        catch (UndeliverableEventException e)
        {
            // Too large, gone, or not JSON: every attempt would fail the same way.
            metrics.Deliveries.WithLabels(subscription.Name, "dead").Inc();
            logger.LogWarning("Delivery of event {EventId} to {Subscription} is dead: {Reason}", delivery.Event.Id, subscription.Name, e.Message);
            results.Writer.TryWrite(new DeliveryResult(
                delivery.Key, delivery.Attempt, DeliveryResultKind.Dead, TimeSpan.Zero, null, e.Message, time.GetUtcNow(), TimeSpan.Zero, null));
        }
        catch (Exception e)
        {
            // Anything the client could not even attempt (a payload that cannot be built) is a
            // dead letter with the reason: retrying it would fail the same way.
            logger.LogError(e, "Delivery of event {EventId} to {Subscription} could not be attempted", delivery.Event.Id, subscription.Name);
            results.Writer.TryWrite(new DeliveryResult(
                delivery.Key, delivery.Attempt, DeliveryResultKind.Dead, TimeSpan.Zero, null,
                $"not deliverable: {e.Message}", time.GetUtcNow(), TimeSpan.Zero, null));
        }
        finally
        {
            body?.Dispose();
            delivery.Values?.Return();
        }
    }

    /// <summary>Writes results in batches; on a database error keeps the batch and tries again.</summary>
    /// <summary>What the retry policy's decision on an attempt records: the result, when to try again, and why.</summary>
    private static (DeliveryResultKind Kind, TimeSpan Delay, string? Reason) ResultOf(RetryDecision decision, DeliveryOutcome outcome) => decision switch
    {
        RetryDecision.Delivered => (DeliveryResultKind.Delivered, TimeSpan.Zero, null),
        RetryDecision.RetryAfter retry => (DeliveryResultKind.Retry, retry.Delay, outcome.Describe()),
        RetryDecision.Dead dead => (DeliveryResultKind.Dead, TimeSpan.Zero, dead.Reason),
        _ => throw new InvalidOperationException($"Unknown decision {decision}"),
    };

    private async Task RecordLoopAsync(CancellationToken cancellationToken)
    {
        var batch = new List<DeliveryResult>(MaxResultsPerWrite);
        var failures = 0;
        var split = false;
        var lastWriteStarted = 0L;
        // A batch kept from a failed write is retried without waiting for a new result: when every
        // slot is taken by deliveries whose results failed, no new result ever comes.
        while (batch.Count > 0 || await results.Reader.WaitToReadAsync(cancellationToken))
        {
            while (batch.Count < MaxResultsPerWrite && results.Reader.TryRead(out var result))
            {
                batch.Add(result);
            }

            var gatherLeft = GatherLeft(lastWriteStarted);
            if (batch.Count < RefillThreshold && !results.Reader.Completion.IsCompleted && gatherLeft > TimeSpan.Zero)
            {
                // A few results soon after the last write: give the requests still running a
                // moment to add theirs.
                await Task.Delay(gatherLeft, time, CancellationToken.None);
                while (batch.Count < MaxResultsPerWrite && results.Reader.TryRead(out var result))
                {
                    batch.Add(result);
                }
            }

            lastWriteStarted = time.GetTimestamp();
            try
            {
                if (split)
                {
                    await RecordOneByOneAsync(batch, writtenBefore: failures > 0, cancellationToken);
                    split = false;
                }
                else
                {
                    var opened = new List<CircuitOpened>();
                    var applied = await store.RecordAsync(Owner, batch, writtenBefore: failures > 0, opened, cancellationToken);
                    protection.Opened(opened);
                    if (applied < batch.Count)
                    {
                        logger.LogWarning("{Lost} results were not recorded: their lease had expired and another worker took them over", batch.Count - applied);
                    }

                    foreach (var result in batch)
                    {
                        Unhold(result);
                    }

                    batch.Clear();
                }

                failures = 0;
                wake.Set();
            }
            catch (PostgresException e) when (IsPermanent(e) && !split)
            {
                // The server refused the batch itself, not the connection: something in one
                // result cannot be written. Write them one by one next, so one bad result cannot
                // hold back the rest for ever.
                logger.LogWarning("Recording {Count} results was refused ({Error}); recording them one by one", batch.Count, e.MessageText);
                split = true;
            }
            catch (Exception e)
            {
                failures++;
                if (results.Reader.Completion.IsCompleted && failures > ShutdownRecordAttempts)
                {
                    // Stopping and the database stays away: these leases expire and the
                    // deliveries are attempted again by whichever worker claims them next.
                    logger.LogError("Giving up recording {Count} results while stopping: {Error}", batch.Count, e.Message);
                    return;
                }

                var delay = ReconnectBackoff.Delay(failures);
                logger.LogWarning("Recording {Count} results failed, retrying in {Delay}: {Error}", batch.Count, delay, e.Message);
                await Task.Delay(delay, time, cancellationToken);
            }

            if (results.Reader.Completion.IsCompleted && batch.Count == 0)
            {
                break;
            }
        }
    }

    /// <summary>
    /// Records results one at a time, removing each from <paramref name="batch"/> once handled. A
    /// result the server refuses is given up: its lease expires and the delivery is attempted
    /// again, instead of staying in flight for ever. A lost connection propagates, keeping the rest.
    /// </summary>
    private async Task RecordOneByOneAsync(List<DeliveryResult> batch, bool writtenBefore, CancellationToken cancellationToken)
    {
        while (batch.Count > 0)
        {
            var result = batch[^1];
            try
            {
                await store.RecordAsync(Owner, [result], writtenBefore, cancellationToken);
            }
            catch (PostgresException e) when (IsPermanent(e))
            {
                logger.LogError(
                    "Could not record the result of event {EventId} attempt {Attempt}; its lease will expire and it will be attempted again: {Error}",
                    result.Key.EventId, result.Attempt, e.MessageText);
            }

            Unhold(result);
            batch.RemoveAt(batch.Count - 1);
        }
    }

    /// <summary>Errors that writing the same data again would meet again (data, integrity, limits).</summary>
    private static bool IsPermanent(PostgresException e) =>
        e.SqlState.StartsWith("22", StringComparison.Ordinal) || e.SqlState.StartsWith("23", StringComparison.Ordinal) ||
        e.SqlState.StartsWith("54", StringComparison.Ordinal);

    /// <summary>Extends the leases of held deliveries every third of a lease.</summary>
    private async Task ExtendLeasesLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(options.Lease / 3, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                try
                {
                    await store.ExtendLeasesAsync(Owner, HeldLeases(), options.Lease, cancellationToken);
                }
                catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
                {
                    logger.LogWarning("Extending leases failed: {Error}", e.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    /// <summary>Frees the slot of <paramref name="result"/>'s delivery, unless a newer attempt of it holds the slot now.</summary>
    private void Unhold(DeliveryResult result)
    {
        if (held.TryGetValue(result.Key, out var state) && state.Attempt == result.Attempt)
        {
            held.TryRemove(new KeyValuePair<DeliveryKey, Held>(result.Key, state));
        }
    }

    private List<HeldLease> HeldLeases() => [.. held.Select(h => new HeldLease(h.Key, h.Value.Attempt, h.Value.Sent))];

    /// <summary>A delivery this worker holds: the attempt it claimed, and whether its request started.</summary>
    private sealed class Held(int attempt)
    {
        private volatile bool sent;

        public int Attempt { get; } = attempt;

        /// <summary>
        /// It takes a request's slot of the worker's concurrency: every delivery does, except the
        /// second and later of a batch, which share their batch's request.
        /// </summary>
        public bool Request { get; set; } = true;

        public bool Sent
        {
            get => sent;
            set => sent = value;
        }
    }

    /// <summary>Where one subscription's claims resume, and when it last took over leases and swept.</summary>
    private sealed class ClaimState
    {
        public ClaimCursor Cursor = ClaimCursor.Sweep;
        public long LastTakeOver;
        public long LastSweep;
    }
}
