namespace TriggerEvents.Postgres.Delivery;

/// <summary>
/// The parts of the claim and of the result write that keep the deliveries of one key of an
/// ordered subscription (<c>ordering: key</c>) one at a time and in commit order (migration
/// 000008). Each delivery of an ordered subscription has its key (<c>order_key</c>) and its
/// place in that key (<c>order_seq</c>), both set by the fan-out.
/// </summary>
internal static class KeyOrdering
{
    /// <summary>
    /// A condition on claim candidate <c>d</c> of subscription <c>$1</c>: it has no key, or no
    /// delivery of the same subscription and key before it is pending (waiting, or retrying after
    /// a failure) or in flight, and its fan-out batch is complete (a later chunk of the batch may
    /// hold an earlier event of its key; the batch's number is read once per claim). One probe
    /// of <c>deliveries_key_order</c>; a held-back row is passed by, so a
    /// blocked key never keeps the claim from the keys after it. Claims of one subscription take
    /// turns under its row lock and each reads what the ones before committed, so the earlier
    /// delivery a claim sees pending was not taken by another claim it cannot see: two claimers
    /// never take two deliveries of a key. Within one claim, the first of a key is still
    /// pending in the statement's snapshot and holds back the rest.
    /// </summary>
    public const string NotHeldBack = """
        (d.order_key IS NULL OR NOT EXISTS (
            SELECT FROM trigger_events.deliveries b
            WHERE b.subscription_id = d.subscription_id AND b.order_key = d.order_key
              AND (b.order_seq, b.event_id) < (d.order_seq, d.event_id)
              AND b.status IN ('pending', 'in_flight') AND b.order_key IS NOT NULL)
          AND d.order_seq IS DISTINCT FROM (
            SELECT sp.batch_order FROM trigger_events.subscription_positions sp
            WHERE sp.subscription_id = $1 AND sp.batch_end IS NOT NULL))
        """;

    /// <summary>
    /// A CTE of the result write, after <c>applied</c> (the rows it changed, with their new
    /// status, key and place): when a keyed delivery is finished (delivered or dead), the next
    /// delivery of its key becomes due now. Claims resume after the last row they took, and
    /// they passed that one by while it was held back; due now, it lies ahead of them again
    /// instead of waiting for the next sweep from the head of the queue. Two other ways a key
    /// moves on rely on that sweep (every ten poll intervals) when the commit window has passed:
    /// a delivery the claim dead-letters because its attempts were spent, and a fan-out batch
    /// that took more than one chunk to make.
    /// </summary>
    public const string HandOff = """
        handed AS (
            UPDATE trigger_events.deliveries n
            SET next_attempt_at = now(), updated_at = now()
            FROM applied a
            CROSS JOIN LATERAL (
                SELECT x.event_id FROM trigger_events.deliveries x
                WHERE x.subscription_id = a.subscription_id AND x.order_key = a.order_key
                  AND (x.order_seq, x.event_id) > (a.order_seq, a.event_id)
                  AND x.status IN ('pending', 'in_flight') AND x.order_key IS NOT NULL
                ORDER BY x.order_seq, x.event_id
                LIMIT 1
            ) next
            WHERE a.order_key IS NOT NULL AND a.status IN ('delivered', 'dead')
              AND n.subscription_id = a.subscription_id AND n.event_id = next.event_id
              -- Pending: no owner (a status condition could draw the planner to the claim index).
              AND n.lease_owner IS NULL AND n.next_attempt_at < now()
        )
        """;
}
