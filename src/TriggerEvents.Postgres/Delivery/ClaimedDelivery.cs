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

    /// <summary>A key's order, in which a run is sent: by <see cref="OrderSeq"/>, then event id.</summary>
    public static int InKeyOrder(ClaimedDelivery a, ClaimedDelivery b) => (a.OrderSeq ?? 0, a.Event.Id).CompareTo((b.OrderSeq ?? 0, b.Event.Id));

    /// <summary>The batch it was claimed in (its first event's id, migration 000009); null when its subscription is not batched.</summary>
    public long? BatchId { get; init; }

    /// <summary>
    /// The claim's scan did not reach it: it came along with its batch (<see cref="Batches.Claim"/>),
    /// so the next claim's cursor does not move past it.
    /// </summary>
    public bool TakenAlong { get; init; }

    /// <summary>
    /// The run of a key's deliveries it was claimed in (<see cref="KeyOrdering.Followers"/>: the
    /// first one's event id), sent one after another in <see cref="OrderSeq"/> order; null when
    /// it was claimed alone.
    /// </summary>
    public long? RunId { get; init; }

    /// <summary>Its place in its key's order (the fan-out batch it was made in); null when its subscription is not ordered.</summary>
    public long? OrderSeq { get; init; }

    /// <summary>The lengths of the event's JSON values in bytes (null where one is SQL NULL).</summary>
    public EventSizes Sizes { get; init; }

    /// <summary>
    /// The values came with the claim, in <see cref="Event"/>. Otherwise the event is too large
    /// to come with a claim (<see cref="DeliveryStore.InlineEventBytes"/>), and
    /// <see cref="DeliveryStore.ReadValuesAsync"/> reads them when there is room for its body.
    /// </summary>
    public bool ValuesIncluded { get; init; } = true;

    /// <summary>The claim did not lease it but dead-lettered it, for this reason: its attempts were spent.</summary>
    public string? DeadAtClaim { get; init; }

    /// <summary>Its event is no longer in the log (deleted by hand): there is nothing to send.</summary>
    public bool EventGone { get; init; }

    /// <summary>
    /// PostgreSQL could not render its event's values as text (over 1 GB), with its error
    /// (<c>trigger_events.render_values</c>, migration 000031): no attempt can send it.
    /// </summary>
    public string? Unrenderable { get; init; }

    /// <summary>The pooled memory <see cref="Event"/>'s values are in; give it back once they are copied.</summary>
    internal PooledBytes? Values { get; init; }

    /// <summary>What this worker holds while it is leased: see <see cref="HeldLease"/>.</summary>
    public HeldLease Lease(bool sent) => new(Key, Attempt, sent);
}

/// <summary>The lengths in bytes of an event's three JSON values (old row, new row, session variables); null where one is SQL NULL.</summary>
internal readonly record struct EventSizes(int? Old, int? New, int? Session)
{
    /// <summary>All three together.</summary>
    public long Total => (long)(Old ?? 0) + (New ?? 0) + (Session ?? 0);
}

/// <summary>
/// A delivery this worker holds under a lease, as the database knows it: result writes, lease
/// extensions and releases apply only while its row is still at <paramref name="Attempt"/> for
/// this owner (after an outage longer than the lease, the same worker can hold the
/// same delivery twice, and the older attempt's result must not free the newer one's lease).
/// </summary>
/// <param name="Key">The delivery.</param>
/// <param name="Attempt">The attempt the claim counted.</param>
/// <param name="Sent">Its request was started: on release the attempt stays counted, since the receiver may have it.</param>
internal readonly record struct HeldLease(DeliveryKey Key, int Attempt, bool Sent);

/// <summary>An array from <see cref="System.Buffers.ArrayPool{T}.Shared"/>, given back once.</summary>
internal sealed class PooledBytes(byte[] array)
{
    private byte[]? array = array;

    /// <summary>The array; it must not be used after <see cref="Return"/>.</summary>
    public byte[] Array => array ?? throw new ObjectDisposedException(nameof(PooledBytes));

    /// <summary>Gives the array back to the pool; later calls do nothing.</summary>
    public void Return()
    {
        if (Interlocked.Exchange(ref array, null) is { } returned)
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(returned);
        }
    }
}

/// <summary>What one claim took, and where the next claim resumes.</summary>
internal sealed record ClaimBatch(IReadOnlyList<ClaimedDelivery> Deliveries, ClaimCursor Next)
{
    /// <summary>After the claim of a subscription with a rate limit or a breaker: when the next claim can take anything.</summary>
    public TargetProtectionState? Protection { get; init; }

    /// <summary>The round's fan-out made a chunk of a larger transaction and has more of it to make (<see cref="DeliveryStore.FanOutContinuesSql"/>).</summary>
    public bool FanOutContinues { get; init; }

    /// <summary>How many of <see cref="Deliveries"/> the fan-out behind the claim made already leased (<see cref="DeliveryStore.FanOutLeasingSql"/>).</summary>
    public int FanOutLeased { get; init; }
}

/// <summary>
/// Which subscriptions a fan-out serves, and how many committed events one call handles at most
/// (it always takes at least one whole transaction, however large).
/// </summary>
internal sealed record FanOutRequest(int[] SubscriptionIds, int MaxEvents);

/// <summary>Identifies one delivery: an event for a subscription.</summary>
internal readonly record struct DeliveryKey(int SubscriptionId, long EventId);

/// <summary>
/// Where <see cref="DeliveryStore.ReadValuesAsync"/> writes an event's three values, each in one
/// or more pieces of memory (a body in chunks) filled in order; null for one that is SQL NULL.
/// </summary>
internal readonly record struct ValuePlaces(IReadOnlyList<Memory<byte>>? Old, IReadOnlyList<Memory<byte>>? New, IReadOnlyList<Memory<byte>>? Session);
