using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Npgsql;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The deliveries this worker holds under its lease, from claim until their result is recorded,
/// and the keeper that extends those leases every third of a lease while requests run.
/// </summary>
/// <remarks>
/// A held delivery takes a slot of <c>worker.concurrency</c>: the database counts it in flight
/// for <c>max_in_flight</c> until its result is recorded, so the worker does the same. A batch is
/// one request and takes one slot, however many deliveries it holds.
/// </remarks>
internal sealed class HeldDeliveries(DeliveryStore store, Guid owner, TimeSpan lease, bool anyBatched, TimeProvider time, ILogger logger)
{
    private readonly ConcurrentDictionary<DeliveryKey, Held> held = new();

    public bool IsEmpty => held.IsEmpty;

    /// <summary>Requests this worker has going: a batch is one, however many deliveries it holds.</summary>
    public int Requests => anyBatched ? held.Count(h => h.Value.Request) : held.Count;

    /// <summary>
    /// Holds a claimed delivery. One this worker still holds under an older attempt (it took its
    /// own expired lease over) counts once: the older request ends within its timeout, and its
    /// result no longer applies.
    /// </summary>
    public Held Hold(ClaimedDelivery delivery)
    {
        var holding = new Held(delivery.Attempt);
        held[delivery.Key] = holding;
        return holding;
    }

    /// <summary>Frees the slot of <paramref name="result"/>'s delivery, unless a newer attempt of it holds the slot now.</summary>
    public void Unhold(DeliveryResult result)
    {
        if (held.TryGetValue(result.Key, out var state) && state.Attempt == result.Attempt)
        {
            held.TryRemove(new KeyValuePair<DeliveryKey, Held>(result.Key, state));
        }
    }

    /// <summary>Every held lease, with whether its request started (a release keeps that attempt counted).</summary>
    public List<HeldLease> Leases() => [.. held.Select(h => new HeldLease(h.Key, h.Value.Attempt, h.Value.Sent))];

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
                    await store.ExtendLeasesAsync(owner, Leases(), lease, cancellationToken);
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

/// <summary>A delivery this worker holds: the attempt it claimed, and whether its request started.</summary>
internal sealed class Held(int attempt)
{
    private volatile bool sent;

    public int Attempt { get; } = attempt;

    /// <summary>
    /// It takes a request's slot of the worker's concurrency: every delivery does, except the
    /// second and later of a batch, which share their batch's request.
    /// </summary>
    public bool Request { get; set; } = true;

    /// <summary>Its request started: the receiver may have it.</summary>
    public bool Sent
    {
        get => sent;
        set => sent = value;
    }
}
