using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Npgsql;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Worker.Signals;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The deliveries this worker holds under its lease, from claim until their result is recorded,
/// and the keeper that extends those leases every third of a lease while requests run.
/// </summary>
/// <remarks>
/// Each held delivery knows when its own lease was last confirmed: by the statement that leased
/// it, then by each extension that did extend it. A request starts only if that lease covers it,
/// extended first if it no longer does (<see cref="CoveredAsync"/>). A worker cut off from the
/// database for longer than a lease, or one whose extension no longer finds a delivery as its
/// own (another worker took it over once it lapsed), must not send it: the other worker does,
/// and for <c>ordering: key</c> two of the key would be in flight. Another claim that succeeds
/// says nothing about deliveries held before.
/// <para>
/// A held delivery takes a slot of <c>worker.concurrency</c>: the database counts it in flight
/// for <c>max_in_flight</c> until its result is recorded, so the worker does the same. A batch is
/// one request and takes one slot, however many deliveries it holds, and so is a key's run.
/// </para>
/// <para>
/// A freed slot wakes the claim loop (<paramref name="slotFreed"/>): the next claim may take
/// something. A result that leaves its request's slot taken (one of a key's run, before its
/// last) does not: the key's next event is already held here, so a claim could only walk the
/// rest of the key's queue again and take nothing, which for a busy key cost the database more
/// than sending the run. New events wake the loop through NOTIFY (<see cref="DeliveryWorker"/>).
/// </para>
/// </remarks>
internal sealed class HeldDeliveries(DeliveryStore store, Guid owner, TimeSpan lease, TimeProvider time, WakeSignal slotFreed, ILogger logger)
{
    private readonly ConcurrentDictionary<DeliveryKey, Held> held = new();
    private int requests;

    /// <summary>Requests this worker has going: a batch is one while any of its deliveries is held.</summary>
    public int Requests => Volatile.Read(ref requests);

    /// <summary>
    /// Holds a claimed delivery as part of <paramref name="request"/> (its own, or its batch's),
    /// leased by a statement that started at <paramref name="leasedAt"/>. One this worker still
    /// holds under an older attempt (it took its own expired lease over) counts once: the older
    /// request ends within its timeout, and its result no longer applies.
    /// </summary>
    public Held Hold(ClaimedDelivery delivery, RequestSlot request, long leasedAt)
    {
        var holding = new Held(delivery.Attempt, request, leasedAt);
        if (Interlocked.Increment(ref request.Members) == 1)
        {
            Interlocked.Increment(ref requests);
        }

        // Removed before it is replaced, so that exactly one of this and Unhold lets it go.
        if (held.TryRemove(delivery.Key, out var older))
        {
            Leave(older);
        }

        held[delivery.Key] = holding;
        return holding;
    }

    /// <summary>Frees the slot of <paramref name="result"/>'s delivery, unless a newer attempt of it holds the slot now.</summary>
    public void Unhold(DeliveryResult result) => Unhold(result.Key, result.Attempt);

    /// <summary>
    /// Gives deliveries whose requests never started back to the queue, their attempts
    /// uncounted, and lets them go: the rest of a key's run behind one to be retried, or what a
    /// lease no longer covers. If the database cannot be told, their leases expire and they are
    /// taken over. Each is let go as held here, not by its attempt: the release gives the attempt
    /// back, and a claim of this worker may hold the delivery again under the same number before
    /// this returns.
    /// </summary>
    public async Task GiveBackAsync(IReadOnlyList<(ClaimedDelivery Delivery, Held State)> unsent)
    {
        try
        {
            await store.ReleaseAsync(owner, [.. unsent.Select(u => new HeldLease(u.Delivery.Key, u.State.Attempt, Sent: false))], CancellationToken.None);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            logger.LogWarning("Could not give back {Count} deliveries; their leases will expire: {Error}", unsent.Count, e.Message);
        }

        foreach (var (delivery, state) in unsent)
        {
            if (held.TryRemove(new KeyValuePair<DeliveryKey, Held>(delivery.Key, state)))
            {
                Leave(state);
            }
        }
    }

    /// <summary>
    /// Takes up to <paramref name="rows"/> more of a key's deliveries onto its run, after its
    /// last member (<see cref="KeyOrdering.RunTakenOn"/>), each held in the run's slot. None when
    /// the key has nothing more ready, the run is no longer this worker's, or the database cannot
    /// be told: the run then ends as it would have, and the next claim takes the key on.
    /// </summary>
    public async Task<List<(ClaimedDelivery Delivery, Held State)>> TakeRunOnAsync(
        (ClaimedDelivery Delivery, Held State) last, int rows, int includedBytes)
    {
        List<ClaimedDelivery> more;
        var started = time.GetTimestamp();
        try
        {
            // Not cancelled at shutdown: what the statement leased must be held, to be released.
            more = await store.TakeRunOnAsync(owner, last.Delivery.Key, last.State.Attempt, rows, lease, includedBytes, CancellationToken.None);
        }
        catch (Exception e)
        {
            // Whatever it was: the run must still end, and hand its key on. Anything the
            // statement leased that is not held here expires and is taken over.
            logger.LogWarning("Could not take a key's run on; it ends and a claim takes the key on: {Error}", e.Message);
            return [];
        }

        var taken = new List<(ClaimedDelivery, Held)>(more.Count);
        foreach (var delivery in more)
        {
            taken.Add((delivery, Hold(delivery, last.State.Request, started)));
        }

        return taken;
    }

    private void Unhold(DeliveryKey key, int attempt)
    {
        if (held.TryGetValue(key, out var state) && state.Attempt == attempt &&
            held.TryRemove(new KeyValuePair<DeliveryKey, Held>(key, state)))
        {
            Leave(state);
        }
    }

    /// <summary>A request's slot is free once the last delivery it carries is let go.</summary>
    private void Leave(Held holding)
    {
        if (Interlocked.Decrement(ref holding.Request.Members) == 0)
        {
            Interlocked.Decrement(ref requests);
            slotFreed.Set();
        }
    }

    /// <summary>
    /// A request of up to <paramref name="timeout"/> started now for <paramref name="state"/>'s
    /// delivery ends before its lease can have expired: counted from the start of the statement
    /// that last leased or extended it, which is no later than the database's own time for it.
    /// </summary>
    public bool LeaseCovers(Held state, TimeSpan timeout) => time.GetElapsedTime(state.ConfirmedAt) + timeout < lease;

    /// <summary>
    /// True when every one of <paramref name="deliveries"/> has a lease that covers a request of
    /// up to <paramref name="timeout"/> started now (<see cref="LeaseCovers"/>), extending at once
    /// those that do not: a delivery that waited (for room in body_memory, behind its run, or
    /// past a lease extension that skipped it) is still sent if it is still this worker's. False
    /// when one is not, or the database cannot say: the caller gives them back unsent.
    /// </summary>
    public async Task<bool> CoveredAsync(IReadOnlyList<(ClaimedDelivery Delivery, Held State)> deliveries, TimeSpan timeout)
    {
        var uncovered = deliveries.Where(d => !LeaseCovers(d.State, timeout)).ToList();
        if (uncovered.Count == 0)
        {
            return true;
        }

        try
        {
            var started = time.GetTimestamp();
            var extended = await store.ExtendLeasesAsync(
                owner, [.. uncovered.Select(d => new HeldLease(d.Delivery.Key, d.State.Attempt, Sent: false))], lease, CancellationToken.None);
            foreach (var (delivery, state) in uncovered)
            {
                if (extended.Contains(delivery.Key))
                {
                    state.Confirm(started);
                }
            }
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            logger.LogWarning("Could not extend {Count} leases before their requests: {Error}", uncovered.Count, e.Message);
            return false;
        }

        return uncovered.TrueForAll(d => LeaseCovers(d.State, timeout));
    }

    /// <summary>Every held lease, with whether its request started (a release keeps that attempt counted).</summary>
    public List<HeldLease> Leases() => [.. held.Select(h => new HeldLease(h.Key, h.Value.Attempt, h.Value.Sent))];

    /// <summary>
    /// Extends the lease of every delivery held now, and confirms those the database extended:
    /// each under the attempt it was held with, which a later hold of the same delivery does not share.
    /// </summary>
    public async Task ExtendLeasesAsync(CancellationToken cancellationToken)
    {
        var holding = held.ToArray();
        if (holding.Length == 0)
        {
            return;
        }

        var started = time.GetTimestamp();
        var extended = await store.ExtendLeasesAsync(owner, [.. holding.Select(h => new HeldLease(h.Key, h.Value.Attempt, h.Value.Sent))], lease, cancellationToken);
        foreach (var (key, state) in holding)
        {
            if (extended.Contains(key))
            {
                state.Confirm(started);
            }
        }
    }

    /// <summary>Extends the leases of held deliveries every third of a lease until cancelled.</summary>
    public async Task KeepLeasesAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(lease / 3, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                try
                {
                    await ExtendLeasesAsync(cancellationToken);
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
}

/// <summary>
/// One request's slot of <c>worker.concurrency</c>: a single delivery's own, or shared by the
/// deliveries of a batch, and taken while any of them is held (one left out of its batch and
/// recorded early does not free the slot of the request still running).
/// </summary>
internal sealed class RequestSlot
{
    /// <summary>The held deliveries it carries.</summary>
    public int Members;
}

/// <summary>
/// A delivery this worker holds: the attempt it claimed, its request's slot, whether its request
/// started, and when its lease was last confirmed.
/// </summary>
internal sealed class Held(int attempt, RequestSlot request, long leasedAt)
{
    private volatile bool sent;
    private long confirmedAt = leasedAt;

    public int Attempt { get; } = attempt;

    public RequestSlot Request { get; } = request;

    /// <summary>When the last statement that leased it or extended its lease started (a <see cref="TimeProvider"/> timestamp).</summary>
    public long ConfirmedAt => Interlocked.Read(ref confirmedAt);

    /// <summary>An extension that started at <paramref name="startedAt"/> extended its lease.</summary>
    public void Confirm(long startedAt)
    {
        var seen = Interlocked.Read(ref confirmedAt);
        while (startedAt > seen && Interlocked.CompareExchange(ref confirmedAt, startedAt, seen) is var found && found != seen)
        {
            seen = found;
        }
    }

    /// <summary>Its request started: the receiver may have it.</summary>
    public bool Sent
    {
        get => sent;
        set => sent = value;
    }
}
