namespace TriggerEvents.Postgres.Delivery;

/// <summary>
/// The claim protocol in one place: where each subscription's claim resumes in its queue, how
/// far behind that it still looks for transactions that committed late, how often it takes over
/// expired leases, and how often it sweeps the queue from its head instead.
/// </summary>
/// <remarks>
/// Claims resume after the last row they took (<see cref="ClaimCursor"/>): every claimed row
/// leaves a dead entry at the head of the pending index until vacuum removes it, and a scan from
/// the head walked them all. A capture's <c>next_attempt_at</c> is its transaction's start, so a
/// transaction that commits after later ones lands behind the cursor: a cursor claim therefore
/// looks back <see cref="CommitWindow"/> from the previous claim, and a sweep from the head
/// every <see cref="SweepPollIntervals"/> poll intervals finds what committed later still. A
/// sweep walks every entry claimed since the table's last vacuum: too long to do every round.
/// <para>
/// A lease expires when its attempt ended without a result: most often its worker died, and the
/// event may be what killed it, as it will kill the next. So a claim takes over one expired
/// lease (with its batch or its key's run) and nothing pending beside it, the worker sends it
/// alone once everything else it had in flight has its result written (a busy key's run takes
/// no more of its key on meanwhile), and the next claim takes over the next at once
/// (<see cref="ClaimSchedule.TookOver"/>), until none is left.
/// Taken over together and sent side by side, the others lost an attempt each time the culprit
/// killed a worker, and were dead beside it after <c>max_attempts</c>. After a worker dies,
/// what it left is sent one request at a time, before the rest of its subscription's queue.
/// </para>
/// </remarks>
internal static class ClaimProtocol
{
    /// <summary>
    /// How long before the previous claim a cursor claim still looks: a transaction that captured
    /// up to this long before it committed is claimed by the next claim; a longer one waits for
    /// the next sweep. Its cost is an index walk over the entries of rows claimed within it,
    /// short while claims keep up. Under flat-out writers on two cores, a quarter of a second
    /// was too short (bench/README.md, "Delivery").
    /// </summary>
    public const string CommitWindow = "1 second";

    /// <summary>
    /// The claim's time in <see cref="DeliveryStore.ClaimSql"/> and its parts: <c>$11</c> when the
    /// worker passes a clock (<see cref="DeliveryStore.Clock"/>, a test's), else the database's.
    /// </summary>
    public const string Now = "coalesce($11::timestamptz, now())";

    /// <summary>Poll intervals between sweeps of a subscription's queue from its head.</summary>
    public const int SweepPollIntervals = 10;
}

/// <summary>
/// Where one subscription's claims resume, and when they take over expired leases (once a poll
/// interval) and sweep from the head (<see cref="ClaimProtocol.SweepPollIntervals"/>).
/// </summary>
internal sealed class ClaimSchedule(TimeProvider time, TimeSpan pollInterval)
{
    private long lastTakeOver;
    private long lastSweep;

    /// <summary>Where the next claim starts, unless it is a sweep.</summary>
    public ClaimCursor Cursor { get; set; } = ClaimCursor.Sweep;

    /// <summary>The last claim took an expired lease over: the next one looks for another at once.</summary>
    public void TookOver() => lastTakeOver = 0;

    /// <summary>What the next claim does: takes over expired leases or not, and from which cursor.</summary>
    public (bool TakeOver, ClaimCursor From) Next()
    {
        var takeOver = IsDue(ref lastTakeOver, pollInterval);
        var from = IsDue(ref lastSweep, pollInterval * ClaimProtocol.SweepPollIntervals) ? ClaimCursor.Sweep : Cursor;
        return (takeOver, from);
    }

    /// <summary>True, and restarts the period, when <paramref name="every"/> has passed since <paramref name="last"/> (or never ran).</summary>
    public static bool IsDue(TimeProvider time, ref long last, TimeSpan every)
    {
        if (last != 0 && time.GetElapsedTime(last) < every)
        {
            return false;
        }

        last = time.GetTimestamp();
        return true;
    }

    private bool IsDue(ref long last, TimeSpan every) => IsDue(time, ref last, every);
}

/// <summary>
/// Where a claim resumes in a subscription's queue of pending deliveries: after the row at
/// (<paramref name="DueAt"/>, <paramref name="EventId"/>), the last one claimed, but no later
/// than a commit window before <paramref name="ClaimedAt"/>, the time of the claim that took it
/// by the database clock.
/// </summary>
internal readonly record struct ClaimCursor(DateTimeOffset DueAt, long EventId, DateTimeOffset ClaimedAt)
{
    /// <summary>From the head of the queue (-infinity): before every row.</summary>
    public static ClaimCursor Sweep { get; } = new(DateTimeOffset.MinValue, 0, DateTimeOffset.MinValue);

    /// <summary>
    /// The cursor after a claim at <paramref name="claimedAt"/>: the last pending row it took, or
    /// the same row if it took none.
    /// </summary>
    public ClaimCursor After(IReadOnlyList<ClaimedDelivery> claimed, DateTimeOffset claimedAt)
    {
        var after = this with { ClaimedAt = claimedAt };
        foreach (var delivery in claimed)
        {
            if (!delivery.TookOverExpiredLease && !delivery.TakenAlong &&
                (delivery.DueAt, delivery.Event.Id).CompareTo((after.DueAt, after.EventId)) > 0)
            {
                after = after with { DueAt = delivery.DueAt, EventId = delivery.Event.Id };
            }
        }

        return after;
    }
}
