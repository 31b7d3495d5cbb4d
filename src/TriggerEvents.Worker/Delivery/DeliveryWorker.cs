using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Logging;
using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Worker.Signals;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The hot path: claim due deliveries under a lease, attempt them, record the results. Its
/// parts, each with one duty: <see cref="ClaimRound"/> claims (the protocol is
/// <see cref="ClaimProtocol"/>), <see cref="DeliveryAttempts"/> makes one attempt or batch end to
/// end through the subscription's target, <see cref="ResultRecorder"/> writes results, and
/// <see cref="HeldDeliveries"/> keeps the leases. This class runs them and decides when to wait.
/// </summary>
/// <remarks>
/// Claims are short statements that commit before any request starts, so no row lock is held
/// across a request (SKIP LOCKED keeps replicas apart). NOTIFY only shortens the wait: the loop
/// polls every <c>poll_interval</c> whatever happens to LISTEN.
/// </remarks>
internal sealed class DeliveryWorker
{
    private readonly WorkerConfig options;
    private readonly DeliveryStore store;
    private readonly WakeSignal wake;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly HeldDeliveries held;
    private readonly ResultRecorder recorder;
    private readonly DeliveryAttempts attempts;
    private readonly ClaimRound claims;
    private readonly TargetProtection protection;

    /// <summary>The shortest <c>batch.max_wait</c> of the worker's subscriptions; null when none batches.</summary>
    private readonly TimeSpan? shortestBatchWait;

    /// <summary>When a claim last took something or a wake-up came: events may be waiting in a partial batch.</summary>
    private long lastArrival;

    public DeliveryWorker(
        WorkerConfig options, IReadOnlyList<ActiveSubscription> subscriptions, DeliveryStore store,
        WakeSignal wake, TimeProvider time, ILogger logger, WorkerMetrics metrics)
    {
        this.options = options;
        this.store = store;
        this.wake = wake;
        this.time = time;
        this.logger = logger;
        BodyMemory = new BodyMemory(options.BodyMemory);
        var batched = subscriptions.Where(s => s.Config.Batch is not null).Select(s => s.Config.Batch!.MaxWait).ToList();
        shortestBatchWait = batched.Count > 0 ? batched.Min() : null;
        protection = new TargetProtection(subscriptions, time, metrics, logger);
        held = new HeldDeliveries(store, Owner, options.Lease, time, wake, logger);
        recorder = new ResultRecorder(store, Owner, held, protection, RefillThreshold, time, logger, onRefusal: wake.Set);
        attempts = new DeliveryAttempts(
            new EventBodies(store, BodyMemory, time), recorder, held,
            runTakeOnRows: options.BatchSize * KeyOrdering.FollowersPerRequest, metrics, time, logger);
        claims = new ClaimRound(options, subscriptions, store, Owner, held, protection, metrics, time, logger);
    }

    /// <summary>This worker's lease owner token.</summary>
    public Guid Owner { get; } = Guid.NewGuid();

    /// <summary>The room large request bodies wait for (<c>worker.body_memory</c>).</summary>
    public BodyMemory BodyMemory { get; }

    /// <summary>When the claim loop last went round: <c>/healthz</c> reads it.</summary>
    public DateTimeOffset LastLoopAt { get; private set; } = DateTimeOffset.MinValue;

    /// <summary>Free slots worth a claim round trip while deliveries are in progress.</summary>
    private int RefillThreshold => Math.Max(1, Math.Min(options.BatchSize, options.Concurrency) / 4);

    /// <summary>
    /// Runs until <paramref name="stopping"/> is cancelled, then stops claiming, lets requests in
    /// flight finish for up to <c>shutdown_timeout</c>, records what finished and releases the rest.
    /// A privilege the worker's role lacks, or a server that takes no writes, met by a claim or by
    /// a result write, stops it the same way, then raises the error: waiting would not bring the
    /// grant back, and the process exits 1 naming it.
    /// </summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        ExceptionDispatchInfo? refused = null;
        using var abort = new CancellationTokenSource();
        var requests = new ConcurrentDictionary<Task, byte>();
        var recording = Task.Run(() => recorder.RunAsync(CancellationToken.None), CancellationToken.None);
        using var stopKeeping = new CancellationTokenSource();
        var keeping = Task.Run(() => held.KeepLeasesAsync(stopKeeping.Token), CancellationToken.None);
        var failures = 0;
        LastLoopAt = time.GetUtcNow();

        while (!stopping.IsCancellationRequested)
        {
            try
            {
                if (recorder.Refusal is { } refusal)
                {
                    // The results cannot be written either: what this worker sends would be sent
                    // again by whoever takes the leases over, while it kept extending them.
                    refused = refusal;
                    break;
                }

                var roundStarted = time.GetTimestamp();
                var work = await claims.ClaimAsync(stopping);
                var takenOver = work.SplitOffTakenOver();
                foreach (var request in Start(work, stopping, abort.Token))
                {
                    Track(requests, request);
                }

                if (takenOver.HoldsAny)
                {
                    await SendAloneAsync(takenOver, requests, stopping, abort.Token);
                }

                work.Failure?.Throw();
                failures = 0;
                LastLoopAt = time.GetUtcNow();
                if (work.Claimed > 0)
                {
                    await ClaimedSomethingAsync(roundStarted, work.Drained, stopping);
                    continue;
                }

                if (work.FanOutContinues)
                {
                    // A large transaction is being fanned out a chunk a round, and an ordered
                    // subscription takes none of it before the last chunk: waiting for a wake-up
                    // here cost a poll interval per chunk.
                    continue;
                }

                // Nothing to take: tell capture to send a wake-up, even with requests in flight
                // (a freed slot wakes the loop, a result that frees none does not, see
                // HeldDeliveries). The flag may be off although this worker set it: the first
                // capture after it takes it as it notifies (migration 000003), and a claim that
                // then found nothing (another replica took the event) must arm it again. When it
                // was off, look once more: an event committed between the empty claim and the
                // flip would otherwise wait for the next poll.
                var armed = await store.ArmWakeUpAsync(stopping);
                if (armed)
                {
                    continue;
                }

                // A subscription held back until a known time (rate limit, open circuit,
                // Retry-After) is claimed again then, not a poll interval later; a partial batch
                // waiting to fill, within its max_wait.
                if (await wake.WaitAsync(BatchWait(protection.IdleWait(options.PollInterval)), stopping))
                {
                    lastArrival = time.GetTimestamp();
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                break;
            }
            catch (PostgresException e) when (DatabaseProblems.NeedsOperator(e))
            {
                // A grant revoked, or one an upgrade did not carry over to a role named otherwise;
                // a server that became read-only (a standby after a failover).
                refused = ExceptionDispatchInfo.Capture(e);
                break;
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
            {
                // The database went away (restart, failover, terminated backend). Nothing held is
                // lost: leases expire, results wait in the recorder. Back off and try again.
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

        recorder.Complete();
        await recording;
        await stopKeeping.CancelAsync();
        await keeping;
        await ReleaseUnfinishedAsync();
        refused?.Throw();
    }

    /// <summary>
    /// One round on its own, for a test that drives the worker with a clock of its own: claims
    /// once, attempts what it took, waits for the attempts to end and writes their results.
    /// </summary>
    /// <returns>How many deliveries were claimed.</returns>
    public async Task<int> RunRoundAsync(CancellationToken cancellationToken)
    {
        var work = await claims.ClaimAsync(cancellationToken);
        await Task.WhenAll(Start(work, cancellationToken, cancellationToken));
        await recorder.WritePostedAsync(cancellationToken);
        work.Failure?.Throw();
        return work.Claimed;
    }

    /// <summary>Starts an attempt for each single delivery, each batch and each key's run a round took.</summary>
    private List<Task> Start(ClaimedWork work, CancellationToken stopping, CancellationToken abort) =>
        [.. Requests(work, stopping, abort).Select(start => start())];

    /// <summary>What starts the attempt of each single delivery, each batch and each key's run a round took.</summary>
    private IEnumerable<Func<Task>> Requests(ClaimedWork work, CancellationToken stopping, CancellationToken abort)
    {
        foreach (var (subscription, delivery, state) in work.Single)
        {
            yield return () => attempts.DeliverAsync(subscription, delivery, state, abort);
        }

        foreach (var (subscription, members) in work.Batches)
        {
            yield return () => attempts.DeliverBatchAsync(subscription, members, abort);
        }

        foreach (var (subscription, members) in work.Runs)
        {
            yield return () => attempts.DeliverRunAsync(subscription, members, stopping, abort);
        }
    }

    private static void Track(ConcurrentDictionary<Task, byte> requests, Task request)
    {
        requests[request] = 0;
        _ = request.ContinueWith(t => requests.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// Sends what a round took over from an expired lease alone: with nothing else of this worker
    /// in flight and every earlier result written, since the event may be what killed the worker
    /// that held it (<see cref="ClaimProtocol"/>). A request holds its slot until its result is
    /// written, so that is when the worker holds no more requests than the ones not yet sent. The
    /// loop counts as alive while it waits (<c>/healthz</c>); once stopping, or once a result
    /// write is refused (the results are then never written), what is left stays held and is
    /// released at shutdown.
    /// </summary>
    private async Task SendAloneAsync(ClaimedWork takenOver, ConcurrentDictionary<Task, byte> requests, CancellationToken stopping, CancellationToken abort)
    {
        // A busy key's run in flight, or taken over, ends with what it holds.
        attempts.TakeOnPaused = true;
        try
        {
            var unsent = Requests(takenOver, stopping, abort).ToList();
            while (true)
            {
                while (held.Requests > unsent.Count && !stopping.IsCancellationRequested && recorder.Refusal is null)
                {
                    // A freed slot sets the signal; the timeout keeps /healthz told.
                    await wake.WaitAsync(TimeSpan.FromSeconds(1), stopping);
                    LastLoopAt = time.GetUtcNow();
                }

                if (unsent.Count == 0 || stopping.IsCancellationRequested || recorder.Refusal is not null)
                {
                    return;
                }

                Track(requests, unsent[0]());
                unsent.RemoveAt(0);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Stopping: the loop's head sees it.
        }
        finally
        {
            attempts.TakeOnPaused = false;
        }
    }

    /// <summary>
    /// After a round that claimed something: lets a few more events arrive than one or two when
    /// everything due was taken, and waits for a useful number of free slots.
    /// </summary>
    private async Task ClaimedSomethingAsync(long roundStarted, bool drained, CancellationToken stopping)
    {
        // The idle flag is left as it is: another group's idle worker may have armed it, and the
        // capture that takes it clears it (000024).
        lastArrival = time.GetTimestamp();

        // Counted from the round's start: a round that took longer has gathered already.
        var gatherLeft = ClaimRound.GatherWait - time.GetElapsedTime(roundStarted);
        if (drained && gatherLeft > TimeSpan.Zero)
        {
            await Task.Delay(gatherLeft, time, stopping);
        }

        // Until a useful batch fits (recorded results free slots and set the wake signal), or one
        // poll interval, so slots held by slow requests cannot keep the rest from being used.
        var started = time.GetTimestamp();
        while (options.Concurrency - held.Requests < RefillThreshold)
        {
            var remaining = options.PollInterval - time.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero || !await wake.WaitAsync(remaining, stopping))
            {
                return;
            }
        }
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
        if (shortestBatchWait is not { } shortest)
        {
            return idleWait;
        }

        // A capture's due time is its transaction's start; one that took up to a second to commit
        // is already that much closer to its max_wait when it arrives.
        var window = shortest + shortest + TimeSpan.FromSeconds(1);
        return lastArrival != 0 && time.GetElapsedTime(lastArrival) < window && shortest < idleWait ? shortest : idleWait;
    }

    /// <summary>
    /// What is still held at shutdown was claimed but never attempted to the end: given back, with
    /// its attempt if its request never started (it may have waited for room in body_memory).
    /// </summary>
    private async Task ReleaseUnfinishedAsync()
    {
        var unfinished = held.Leases();
        if (unfinished.Count == 0)
        {
            return;
        }

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
