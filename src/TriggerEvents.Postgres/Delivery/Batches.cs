using Npgsql;
using NpgsqlTypes;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Postgres.Delivery;

/// <summary>
/// The parts of the claim that make and keep batches (<c>batch</c>, migration 000009). A batched
/// subscription's claim groups the due deliveries it takes into batches of up to
/// <c>batch_max_events</c>, in claim order, and writes each delivery's <c>batch_id</c> (the event
/// id of its batch's first, lowest, event). A batch is one request: one slot of
/// <c>max_in_flight</c>, one token of the rate limit. A later claim that finds any delivery of a
/// batch due takes the rest of it along, so a retry sends the same events under the same id.
/// </summary>
internal static class Batches
{
    /// <summary>
    /// The CTEs between the claim's scans (<c>expired</c>, <c>pending</c>, and the followers of
    /// a key, <see cref="KeyOrdering.Followers"/>) and its update: <c>members</c>, the due rest of the batches those scans found part of (wherever the scans
    /// stopped: their LIMIT, their cursor, SKIP LOCKED; <c>along</c>: the claim's cursor does not
    /// move past them, as the scan did not reach them), then <c>allowed</c>: every candidate with
    /// its <c>position</c> in claim order, its request (<c>unit_id</c>: the event itself when not
    /// batched, else its batch's id, given or new), the request's size, the time its oldest
    /// delivery became due, and its <c>unit_rank</c> among the requests, which the claim caps at
    /// the free slots and the budget. New batches are numbered negative (apart from batch ids and
    /// event ids, which are positive) until their first event's id names them.
    /// </summary>
    /// <remarks>
    /// Ordered subscriptions: the scan takes only the first pending delivery of each key
    /// (<see cref="KeyOrdering.NotHeldBack"/>), so a batch holds at most one event of a key, and a
    /// key's next event waits until the batch is finished: per-key order holds across batches,
    /// and no key is in two batches in flight. The members' look-up checks the same, so a dead
    /// retry that put a batch's event behind later ones of its key sends it after them.
    /// </remarks>
    public const string Claim = $$"""
        members AS (
            SELECT d.subscription_id, d.event_id, d.status = 'in_flight' AS took_over, d.next_attempt_at AS due_at, d.batch_id,
                   d.order_key, d.order_seq
            FROM trigger_events.deliveries d
            -- Only while the subscription is batched: a batch it was once in means nothing after.
            WHERE d.subscription_id = $1 AND (SELECT c.batch_max FROM capacity c) IS NOT NULL
              AND d.batch_id = ANY (ARRAY(SELECT x.batch_id FROM expired x WHERE x.batch_id IS NOT NULL)
                                    || ARRAY(SELECT x.batch_id FROM pending x WHERE x.batch_id IS NOT NULL))
              AND d.status IN ('pending', 'in_flight') AND d.batch_id IS NOT NULL
              -- A pending member comes along once one of its batch is due: the results of one
              -- request may be written apart, each due at its own write's time plus the delay,
              -- and a claim between the two due times split the batch into two requests under
              -- two webhook-ids. Not one parked at 'infinity' behind its key.
              AND (d.status = 'pending' AND d.next_attempt_at < 'infinity'
                   OR d.next_attempt_at <= {{ClaimProtocol.Now}} AND $7)
              AND NOT d.event_id = ANY (ARRAY(SELECT x.event_id FROM expired x) || ARRAY(SELECT x.event_id FROM pending x))
              AND {{KeyOrdering.NotHeldBack}}
            FOR UPDATE SKIP LOCKED
        ), candidates AS (
            -- In claim order as read (no sort): fresh counts the deliveries in no batch yet up to each.
            SELECT due.*, row_number() OVER w AS position, count(*) FILTER (WHERE due.batch_id IS NULL) OVER w AS fresh
            FROM (SELECT *, false AS along, NULL::bigint AS head FROM expired UNION ALL SELECT *, false, NULL FROM pending
                  UNION ALL SELECT *, true, NULL FROM members UNION ALL SELECT f.subscription_id, f.event_id, f.took_over, f.due_at, f.batch_id, f.order_key, f.order_seq, true, f.head
                  FROM unbroken f) due
            WINDOW w AS (ROWS UNBOUNDED PRECEDING)
        ), grouped AS (
            -- A key's followers (KeyOrdering.Followers) go in their head's request.
            SELECT a.*, CASE WHEN c.batch_max IS NULL THEN coalesce(a.head, a.event_id)
                             WHEN a.batch_id IS NOT NULL THEN a.batch_id
                             ELSE -1 - (a.fresh - 1) / c.batch_max
                        END AS unit
            FROM candidates a, capacity c
        ), units AS (
            -- The windows below sort the claim's own candidates (at most $3 rows, in memory), never the queue.
            SELECT g.*, CASE WHEN g.unit > 0 THEN g.unit ELSE min(g.event_id) OVER (PARTITION BY g.unit) END AS unit_id,
                   count(*) OVER (PARTITION BY g.unit) AS unit_size, min(g.due_at) OVER (PARTITION BY g.unit) AS unit_due,
                   min(g.position) OVER (PARTITION BY g.unit) AS unit_first
            FROM grouped g
        ), allowed AS (
            SELECT u.*, dense_rank() OVER (ORDER BY u.unit_first) AS unit_rank FROM units u
        )
        """;

    /// <summary>
    /// The claim's condition on <c>allowed</c> with <c>capacity c</c>: a request goes now unless it
    /// is a new batch short of <c>batch_max_events</c> whose oldest delivery has been due for less
    /// than <c>batch_max_wait</c>; that one waits to fill (its rows stay pending, ahead of the
    /// cursor) and the worker claims again within <c>max_wait</c>. A batch formed before (a retry,
    /// an expired lease) always goes as it is.
    /// </summary>
    public const string Ready = $$"""
        (c.batch_max IS NULL OR allowed.unit > 0 OR allowed.unit_size >= c.batch_max OR allowed.unit_due <= {{ClaimProtocol.Now}} - c.batch_wait)
        """;

    /// <summary>Writes a subscription's <c>batch</c> from its file, when it changed.</summary>
    internal const string ConfigureSql = """
        UPDATE trigger_events.subscriptions SET batch_max_events = $2, batch_max_wait = $3
        WHERE id = $1 AND (batch_max_events, batch_max_wait) IS DISTINCT FROM ($2, $3)
        """;

    /// <summary>Writes <paramref name="subscription"/>'s batch settings (see <see cref="ConfigureSql"/>).</summary>
    public static async Task ConfigureAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, int id, SubscriptionConfig subscription, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(ConfigureSql, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = id });
        command.Parameters.Add(new NpgsqlParameter<int?> { TypedValue = subscription.Batch?.MaxEvents, NpgsqlDbType = NpgsqlDbType.Integer });
        command.Parameters.Add(new NpgsqlParameter<TimeSpan?> { TypedValue = subscription.Batch?.MaxWait, NpgsqlDbType = NpgsqlDbType.Interval });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// How many rows a claim of up to <paramref name="requests"/> requests reads: a batch's worth
    /// per request, bounded so that one claim stays a few thousand rows.
    /// </summary>
    public static int Rows(int requests, int? maxEvents) =>
        maxEvents is not { } max ? requests : (int)Math.Min((long)requests * max, Math.Max(max, MaxRowsPerClaim));

    /// <summary>
    /// The most bytes of values an event may have to come with a claim of <paramref name="rows"/>
    /// rows for <paramref name="requests"/> requests: <paramref name="inlineBytes"/> shared out so
    /// that a batched claim brings no more values in all than an unbatched one of as many
    /// requests (at least 1 KiB each); larger events are read apart, one at a time, as a large
    /// event always is (<see cref="DeliveryStore.ReadValuesAsync"/>).
    /// </summary>
    public static int InlineBytes(int inlineBytes, int requests, int rows) =>
        rows <= requests ? inlineBytes : (int)Math.Min(inlineBytes, Math.Max(1024, (long)inlineBytes * requests / rows));

    /// <summary>The most rows a batched subscription's claim reads (see <see cref="Rows"/>).</summary>
    public const int MaxRowsPerClaim = 2000;
}
