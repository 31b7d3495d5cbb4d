using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Logging;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery;

/// <summary>What one claim round took: single deliveries and batches to attempt, each already held.</summary>
internal sealed class ClaimedWork
{
    public List<(ActiveSubscription Subscription, ClaimedDelivery Delivery, Held State)> Single { get; } = [];

    public List<(ActiveSubscription Subscription, List<(ClaimedDelivery Delivery, Held State)> Members)> Batches { get; } = [];

    /// <summary>Runs of a key's deliveries (<see cref="KeyOrdering.Followers"/>), each sent one after another.</summary>
    public List<(ActiveSubscription Subscription, List<(ClaimedDelivery Delivery, Held State)> Members)> Runs { get; } = [];

    /// <summary>Deliveries claimed, dead-lettered ones included.</summary>
    public int Claimed { get; set; }

    /// <summary>Some claim took fewer requests than it asked for: its queue is drained for now.</summary>
    public bool Drained { get; set; }

    /// <summary>
    /// The round's fan-out made a chunk of a larger transaction and has more of it to make. An
    /// ordered subscription can take none of that transaction's events before the last chunk
    /// (<see cref="KeyOrdering.NotHeldBack"/>), so the worker goes on at once instead of waiting.
    /// </summary>
    public bool FanOutContinues { get; set; }

    /// <summary>Deliveries the round's fan-out made already leased to this worker (migration 000013).</summary>
    public int FanOutLeased { get; set; }

    /// <summary>
    /// A claim that failed after earlier claims of the round had taken deliveries: those are held
    /// and their leases kept, so they must still be started (no other worker could take them over
    /// while this one lives), and the failure is raised only after that.
    /// </summary>
    public ExceptionDispatchInfo? Failure { get; set; }

    /// <summary>Whether the round holds anything to send.</summary>
    public bool HoldsAny => Single.Count + Batches.Count + Runs.Count > 0;

    /// <summary>
    /// Moves the requests that hold a delivery taken over from an expired lease (its attempt
    /// ended without a result) out of this round, into a work of their own.
    /// </summary>
    public ClaimedWork SplitOffTakenOver()
    {
        var takenOver = new ClaimedWork();
        takenOver.Single.AddRange(Single.Where(s => s.Delivery.TookOverExpiredLease));
        Single.RemoveAll(s => s.Delivery.TookOverExpiredLease);
        takenOver.Batches.AddRange(Batches.Where(b => b.Members.Exists(m => m.Delivery.TookOverExpiredLease)));
        Batches.RemoveAll(b => b.Members.Exists(m => m.Delivery.TookOverExpiredLease));
        takenOver.Runs.AddRange(Runs.Where(r => r.Members.Exists(m => m.Delivery.TookOverExpiredLease)));
        Runs.RemoveAll(r => r.Members.Exists(m => m.Delivery.TookOverExpiredLease));
        return takenOver;
    }
}

/// <summary>
/// One pass of claims over the worker's subscriptions (<see cref="ClaimProtocol"/>): each
/// claims what its free slots, <c>max_in_flight</c> and its target's protection allow, from where
/// its last claim stopped; the claimed deliveries are held and grouped into requests.
/// </summary>
/// <remarks>
/// The round's first claim comes with the fan-out of every subscription of this worker: the
/// events committed since each one's place in the log become deliveries, in the same round trip.
/// For a subscription without key ordering, rate limit or breaker it goes after the claim and
/// makes what the claim left room for already leased, in whole batches when it is batched
/// (<see cref="DeliveryStore.FanOutLeasingSql"/>); for any other it goes before,
/// so the claim behind it can take what it made at once. It runs when the previous round drained
/// a queue or leased from the fan-out, and at least once a poll interval: while claims still find
/// work, what it made before is enough.
/// </remarks>
internal sealed class ClaimRound(
    WorkerConfig options, IReadOnlyList<ActiveSubscription> subscriptions, DeliveryStore store, Guid owner,
    HeldDeliveries held, TargetProtection protection, WorkerMetrics metrics, TimeProvider time, ILogger logger)
{
    /// <summary>
    /// The least time from the start of one claim of a drained queue to the next, and from the
    /// start of one result write to the next while results are few: a statement per handful of
    /// rows cost the database more per event than the one it serves. Counted from the start, a
    /// claim or write that took longer has already gathered, and the next one starts at once.
    /// </summary>
    public static readonly TimeSpan GatherWait = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// Committed events one fan-out turns into deliveries at most, in claim batches: enough for
    /// the claims of the rounds until the queue runs low again, few enough that a backlog in the
    /// log is not all turned into delivery rows ahead of the claims.
    /// </summary>
    private const int FanOutBatches = 4;

    private readonly FanOutRequest fanOutRequest = new([.. subscriptions.Select(s => s.Id)], FanOutBatches * options.BatchSize);
    private readonly Dictionary<int, ClaimSchedule> schedules = [];
    private bool fanOutDue = true;
    private long lastFanOut;

    /// <summary>Claims once for each subscription while slots are free.</summary>
    public async Task<ClaimedWork> ClaimAsync(CancellationToken cancellationToken)
    {
        var work = new ClaimedWork();
        var fanOut = fanOutDue || ClaimSchedule.IsDue(time, ref lastFanOut, options.PollInterval) ? fanOutRequest : null;
        if (fanOut is not null)
        {
            lastFanOut = time.GetTimestamp();
        }

        try
        {
            foreach (var subscription in subscriptions)
            {
                var free = options.Concurrency - held.Requests;
                if (free <= 0)
                {
                    break;
                }

                if (!protection.MayClaim(subscription.Id))
                {
                    // Its last claim said it can take nothing until a known time: no round trip before.
                    continue;
                }

                if (!schedules.TryGetValue(subscription.Id, out var schedule))
                {
                    schedules[subscription.Id] = schedule = new ClaimSchedule(time, options.PollInterval);
                }

                var limit = Math.Min(options.BatchSize, free);
                var (takeOver, from) = schedule.Next();
                var started = time.GetTimestamp();
                var claimBatch = await store.ClaimAsync(
                    subscription.Id, owner, limit, options.Lease, from, takeOver, fanOut,
                    subscription.InlineBytes, cancellationToken);
                fanOut = null;
                protection.Claimed(subscription, claimBatch.Protection);
                schedule.Cursor = claimBatch.Next;
                work.FanOutContinues |= claimBatch.FanOutContinues;
                work.FanOutLeased += claimBatch.FanOutLeased;
                work.Claimed += claimBatch.Deliveries.Count;
                work.Drained |= Requests(claimBatch.Deliveries) < limit;
                Hold(subscription, claimBatch.Deliveries, started, work);
                // A keyed delivery the claim dead-lettered has no result to write, which would hand
                // its key on to the next one, parked behind it: hand it on here instead of leaving it
                // to the next sweep.
                if (claimBatch.Deliveries.Any(d => d.DeadAtClaim is not null && d.OrderSeq is not null))
                {
                    await store.HandOffAsync(
                        [.. claimBatch.Deliveries.Where(d => d.DeadAtClaim is not null && d.OrderSeq is not null).Select(d => d.Key)], cancellationToken);
                }

                if (claimBatch.Deliveries.Any(d => d.TookOverExpiredLease))
                {
                    // Sent alone, after the rest of the round (ClaimProtocol): the next round
                    // looks for the next expired lease at once.
                    schedule.TookOver();
                }
            }
        }
        catch (Exception e) when (work.HoldsAny)
        {
            // What the earlier claims took is held, its leases kept: it is started before the
            // failure is raised (see ClaimedWork.Failure). A dead-lettered key whose hand-off
            // failed is handed on by the next sweep.
            work.Failure = ExceptionDispatchInfo.Capture(e);
        }

        fanOutDue = work.Drained || work.FanOutLeased > 0;
        return work;
    }

    /// <summary>Holds what a claim that started at <paramref name="leasedAt"/> took, as single requests, batches and runs; logs what it dead-lettered.</summary>
    private void Hold(ActiveSubscription subscription, IReadOnlyList<ClaimedDelivery> claimed, long leasedAt, ClaimedWork work)
    {
        Dictionary<long, (RequestSlot Slot, List<(ClaimedDelivery, Held)> Members)>? shared = null;
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
                logger.LogWarning("Delivery of event {EventId} to {Subscription} is dead: {Reason}", delivery.Event.Id, subscription.Name, reason);
                continue;
            }

            if ((delivery.RunId ?? delivery.BatchId) is not { } unitId)
            {
                work.Single.Add((subscription, delivery, held.Hold(delivery, new RequestSlot(), leasedAt)));
                continue;
            }

            // A batch goes in one request and a key's run one request at a time: either way its
            // deliveries share one slot. (A run is never batched, and both ids are event ids.)
            shared ??= [];
            if (!shared.TryGetValue(unitId, out var unit))
            {
                shared[unitId] = unit = (new RequestSlot(), []);
                (delivery.RunId is null ? work.Batches : work.Runs).Add((subscription, unit.Members));
            }

            unit.Members.Add((delivery, held.Hold(delivery, unit.Slot, leasedAt)));
        }
    }

    /// <summary>How many requests a claim's deliveries make at a time: a batch is one, and so is a key's run.</summary>
    private static int Requests(IReadOnlyList<ClaimedDelivery> claimed)
    {
        var single = 0;
        HashSet<long>? units = null;
        foreach (var delivery in claimed)
        {
            if ((delivery.RunId ?? delivery.BatchId) is { } unitId)
            {
                (units ??= []).Add(unitId);
            }
            else
            {
                single++;
            }
        }

        return single + (units?.Count ?? 0);
    }
}
