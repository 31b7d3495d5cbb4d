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
    /// of <c>deliveries_key_order</c>, backwards from the candidate: the nearest earlier entry
    /// comes first, and for a held-back row it is a live one. Forwards from the key's first
    /// entry, the probe would pass the dead entries of every delivery of the key finished since
    /// the last vacuum, for every candidate (bench/README.md, "A busy key's probe"). It is a
    /// scalar subquery because the planner drops the ORDER BY and LIMIT of an EXISTS. A held-back
    /// row is passed by, so a blocked key never keeps the claim from the keys after it. Claims of one subscription take
    /// turns under its row lock and each reads what the ones before committed, so the earlier
    /// delivery a claim sees pending was not taken by another claim it cannot see: two claimers
    /// never take two deliveries of a key. Within one claim, the first of a key is still
    /// pending in the statement's snapshot and holds back the rest.
    /// </summary>
    public const string NotHeldBack = $"""
        (d.order_key IS NULL OR {EarlierUnfinished} IS NULL AND {NotInBatchBeingMade})
        """;

    /// <summary>
    /// Subscription <c>s</c> sends a key's deliveries as runs (<see cref="Followers"/>): ordered,
    /// neither batched (a batch holds one event of a key) nor rate limited (a run would go beyond
    /// its tokens), and its circuit closed (a probe is one request).
    /// </summary>
    public const string SendsRuns =
        "s.ordering_key IS NOT NULL AND s.batch_max_events IS NULL AND s.rate_per_second IS NULL AND s.circuit = 'closed'";

    /// <summary>
    /// Delivery <c>d</c> of subscription <c>$1</c> is not in the fan-out batch still being made
    /// in chunks: a later chunk may hold an earlier event of its key.
    /// </summary>
    private const string NotInBatchBeingMade = """
        d.order_seq IS DISTINCT FROM (
            SELECT sp.batch_order FROM trigger_events.subscription_positions sp
            WHERE sp.subscription_id = $1 AND sp.batch_end IS NOT NULL)
        """;

    /// <summary>
    /// How many of a key's next deliveries one claim takes along behind the first, at most, for
    /// each request (<c>$3</c>) it may take: the worker sends them one after another.
    /// </summary>
    public const int FollowersPerRequest = 3;

    /// <summary><see cref="FollowersPerRequest"/> times the claim's rows (<c>$3</c>), in SQL.</summary>
    private const string FollowerLimit = "$3 * 3";

    /// <summary>
    /// The CTEs after the claim's scans (<c>expired</c>, <c>pending</c>) that take a key's next
    /// deliveries along with its first (<c>followers</c>, each with its <c>head</c>): a key's
    /// events then go one request after another from one worker, each as soon as the one
    /// before is accepted, instead of one per claim, and a busy key is bound by its requests'
    /// round trips rather than by a result write and a claim between them. The worker sends a
    /// head and its followers in order and gives the rest back, unsent, when one is to be
    /// retried (one that is dead lets the key continue) or its lease cannot be shown to outlast
    /// its request. Only for an ordered subscription that
    /// is neither batched (a batch holds one event of a key) nor rate limited (the followers
    /// would go beyond its tokens), and while its circuit is closed (a probe is one request).
    /// </summary>
    /// <remarks>
    /// A follower is due and pending, or parked (<see cref="ParkedRow"/>: waiting for the one
    /// before it, which the run sends first), or an expired lease being taken over (<c>$7</c>),
    /// like its head, and not in a fan-out batch still being made; the first that is not ends the
    /// key's run. A run with a follower another transaction holds locked (SKIP LOCKED passed it
    /// by) is not taken: its head goes alone, and the next claim takes the rest. Claims of one
    /// subscription take turns under its row lock, so nobody else claims the same run meanwhile.
    /// </remarks>
    public const string Followers = $$"""
        heads AS (
            SELECT h.event_id, h.order_key, h.order_seq
            FROM (SELECT x.event_id, x.order_key, x.order_seq FROM expired x
                  UNION ALL SELECT x.event_id, x.order_key, x.order_seq FROM pending x) h
            WHERE h.order_key IS NOT NULL AND (SELECT c.runs FROM capacity c)
        ), next_in_key AS (
            SELECT n.event_id, h.event_id AS head, n.order_seq, n.wanted
            FROM heads h
            CROSS JOIN LATERAL (
                SELECT r.event_id, r.order_seq, count(*) OVER () AS wanted
                FROM (
                    SELECT d.event_id, d.order_seq,
                           bool_and((d.status = 'pending' OR $7) AND (d.next_attempt_at <= {{ClaimProtocol.Now}} OR {{ParkedRow}})
                                    AND {{NotInBatchBeingMade}})
                               OVER (ORDER BY d.order_seq, d.event_id ROWS UNBOUNDED PRECEDING) AS ready
                    FROM trigger_events.deliveries d
                    WHERE d.subscription_id = $1 AND d.order_key = h.order_key
                      AND (d.order_seq, d.event_id) > (h.order_seq, h.event_id)
                      AND d.status IN ('pending', 'in_flight') AND d.order_key IS NOT NULL
                    ORDER BY d.order_seq, d.event_id
                    -- The claim's share for each key: a few keys take long runs, many keys short ones.
                    LIMIT greatest(1, {{FollowerLimit}} / nullif((SELECT count(*) FROM heads), 0))
                ) r
                WHERE r.ready
            ) n
        ), followers AS (
            SELECT d.subscription_id, d.event_id, d.took_over, d.due_at, d.batch_id, d.order_key, d.order_seq, n.head, n.wanted
            FROM next_in_key n
            -- A probe of the primary key per follower, locked as it is read: as a join, the
            -- generic plan could walk every delivery of the subscription, history included, even
            -- for a claim with no follower to look up.
            CROSS JOIN LATERAL (
                SELECT d.subscription_id, d.event_id, d.status = 'in_flight' AS took_over, d.next_attempt_at AS due_at, d.batch_id,
                       d.order_key, d.order_seq
                FROM trigger_events.deliveries d
                WHERE d.subscription_id = $1 AND d.event_id = n.event_id
                  -- Checked again on the row as locked: one written since the statement began (a
                  -- result, a lease extended) is not taken.
                  AND (d.status = 'pending' OR d.status = 'in_flight' AND $7) AND (d.next_attempt_at <= {{ClaimProtocol.Now}} OR {{ParkedRow}})
                FOR UPDATE OF d SKIP LOCKED
            ) d
            WHERE NOT n.event_id = ANY (ARRAY(SELECT x.event_id FROM expired x) || ARRAY(SELECT x.event_id FROM pending x))
        ), unbroken AS (
            -- A run SKIP LOCKED left a gap in (rare) is not taken: its head goes alone.
            SELECT f.* FROM (SELECT f.*, count(*) OVER (PARTITION BY f.head) AS got FROM followers f) f
            WHERE f.got = f.wanted
        )
        """;

    /// <summary>
    /// The CTEs that take a key's run on (<c>taken</c>): up to <c>$4</c> of the key's next
    /// deliveries after <c>$3</c>, the run's last member, which worker <c>$2</c> still holds
    /// under the lease of its attempt <c>$8</c> (not one it took over since), not run out. While
    /// a busy key's run is being sent, the worker takes its next deliveries this way before the
    /// run runs out, so the key's requests go on one after another instead of pausing at the end
    /// of every run for the last result write, the hand-off and the next claim (bench/README.md,
    /// "A busy key's runs taken on"). The key is this worker's while it holds a delivery of it in
    /// flight: no claim takes a delivery with an unfinished one before it
    /// (<see cref="NotHeldBack"/>), so no other worker can be sending the key. Only while the
    /// subscription is enabled and still sends its keys in runs (<see cref="SendsRuns"/>), and
    /// no Retry-After holds it back (<see cref="TargetProtectionQueries"/>). A delivery
    /// is taken as a follower is (pending, due or parked, not in a fan-out batch still being
    /// made), and, as the claim does, not one whose attempts are spent (the next claim
    /// dead-letters it); the first that is not ends what is taken, and so does one another
    /// transaction holds locked (SKIP LOCKED passed it by): a run never skips an event of its key.
    /// </summary>
    public const string RunTakenOn = $$"""
        run AS (
            -- The run's last member by its primary key, OFFSET 0 keeping the conditions on it
            -- outside (see locked below): in flight, they drew the planner to deliveries_leased,
            -- whose entries of finished leases stay until vacuum.
            SELECT d.order_key, d.order_seq, d.event_id, s.max_attempts
            FROM (SELECT d.* FROM trigger_events.deliveries d WHERE d.subscription_id = $1 AND d.event_id = $3 OFFSET 0) d
            JOIN trigger_events.subscriptions s ON s.id = d.subscription_id
            WHERE d.lease_owner = $2 AND d.attempts = $8 AND d.status = 'in_flight'
              AND d.next_attempt_at > {{RunNow}} AND d.order_key IS NOT NULL
              AND s.enabled AND {{SendsRuns}} AND (s.held_until IS NULL OR s.held_until <= {{RunNow}})
        ), next_in_key AS (
            SELECT r.event_id, r.rank
            FROM run h
            CROSS JOIN LATERAL (
                SELECT d.event_id, row_number() OVER w AS rank,
                       bool_and(d.status = 'pending' AND (d.next_attempt_at <= {{RunNow}} OR {{ParkedRow}}) AND d.attempts < h.max_attempts
                                AND {{NotInBatchBeingMade}}) OVER w AS ready
                FROM trigger_events.deliveries d
                WHERE d.subscription_id = $1 AND d.order_key = h.order_key
                  AND (d.order_seq, d.event_id) > (h.order_seq, h.event_id)
                  AND d.status IN ('pending', 'in_flight') AND d.order_key IS NOT NULL
                WINDOW w AS (ORDER BY d.order_seq, d.event_id ROWS UNBOUNDED PRECEDING)
                ORDER BY d.order_seq, d.event_id
                LIMIT $4
            ) r
            WHERE r.ready
        ), locked AS (
            -- A probe of the primary key per delivery, locked as it is read, and checked again on
            -- the row as locked (see Followers). Pending is checked outside the probe, OFFSET 0
            -- keeping it there: inside, it let the planner probe deliveries_pending instead, which
            -- statistics gathered while most deliveries were finished make look nearly empty,
            -- and which cannot look a row up by event (every pending delivery of the subscription
            -- walked for each one taken).
            SELECT n.rank, d.event_id, d.next_attempt_at AS due_at
            FROM next_in_key n
            CROSS JOIN LATERAL (
                SELECT d.event_id, d.next_attempt_at, d.status
                FROM trigger_events.deliveries d
                WHERE d.subscription_id = $1 AND d.event_id = n.event_id
                  AND (d.next_attempt_at <= {{RunNow}} OR {{ParkedRow}})
                OFFSET 0
                FOR UPDATE OF d SKIP LOCKED
            ) d
            WHERE d.status = 'pending'
        ), taken AS (
            SELECT l.* FROM locked l
            WHERE l.rank < coalesce((SELECT min(n.rank) FROM next_in_key n WHERE NOT n.event_id = ANY (ARRAY(SELECT x.event_id FROM locked x))), $4 + 1)
        )
        """;

    /// <summary>The time of <see cref="RunTakenOn"/>'s statement: a test's clock (<c>$7</c>), else <c>now()</c>.</summary>
    public const string RunNow = "coalesce($7::timestamptz, now())";

    /// <summary>
    /// Delivery row <c>d</c> is parked (migration 000016): pending, due at 'infinity', because
    /// an earlier delivery of its key was unfinished when the fan-out made it. No claim's scan
    /// reaches it; the key's hand-off makes it due.
    /// </summary>
    public const string ParkedRow = "d.status = 'pending' AND d.next_attempt_at = 'infinity'";

    /// <summary>
    /// After the result write (<c>$1</c>, <c>$2</c>: the keyed deliveries it finished, delivered
    /// or dead), in its transaction: the next delivery of each one's key, parked or waiting,
    /// becomes due now. Claims resume after the last row they took, and passed a waiting one by
    /// while it was held back; due now, it lies ahead of them again instead of waiting for the
    /// next sweep from the head of the queue. It is a statement of its own so that its snapshot
    /// is newer than the write's: a fan-out that parked a delivery behind one of these held that
    /// one share-locked, so the write waited for the fan-out's commit, and only a later snapshot
    /// sees what it parked. The worker runs it after a claim too, for the deliveries the claim
    /// dead-lettered because their attempts were spent. A fan-out batch that took more than one
    /// chunk to make relies on the sweep (every ten poll intervals; <see cref="UnparkSql"/>).
    /// </summary>
    public const string HandOffSql = """
        UPDATE trigger_events.deliveries n
        SET next_attempt_at = now(), updated_at = now()
        FROM unnest($1::int[], $2::bigint[]) AS r(subscription_id, event_id)
        JOIN trigger_events.deliveries a ON a.subscription_id = r.subscription_id AND a.event_id = r.event_id
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
          -- A retry's backoff is kept.
          AND n.lease_owner IS NULL AND (n.next_attempt_at < now() OR n.next_attempt_at = 'infinity')
        """;

    /// <summary>
    /// At a sweep of subscription <c>$1</c>'s queue: its parked deliveries with nothing
    /// unfinished before them in their key become due now. The hand-off does this as keys move
    /// on; this catches what is missed (a worker that stopped between a claim that dead-lettered
    /// and its hand-off), and parked rows a worker of an earlier release, which hands nothing
    /// parked on, left behind. One walk of the
    /// parked rows (the end of <c>deliveries_pending</c>), a backwards probe of
    /// <c>deliveries_key_order</c> each, once every sweep. One scan: as a join of the parked rows
    /// with the ones to make due, the generic plan walked them all again for each.
    /// </summary>
    public const string UnparkSql = $"""
        UPDATE trigger_events.deliveries d
        SET next_attempt_at = now(), updated_at = now()
        WHERE d.subscription_id = $1 AND d.status = 'pending' AND d.next_attempt_at = 'infinity'
          AND {EarlierUnfinished} IS NULL
        """;

    /// <summary>
    /// The nearest earlier delivery of row <c>d</c>'s key that is unfinished (pending, parked or
    /// in flight), or NULL: one probe of <c>deliveries_key_order</c>, backwards from <c>d</c>.
    /// See <see cref="NotHeldBack"/> for why backwards, and as a scalar subquery.
    /// </summary>
    private const string EarlierUnfinished = """
        (SELECT b.event_id FROM trigger_events.deliveries b
         WHERE b.subscription_id = d.subscription_id AND b.order_key = d.order_key
           AND (b.order_seq, b.event_id) < (d.order_seq, d.event_id)
           AND b.status IN ('pending', 'in_flight') AND b.order_key IS NOT NULL
         ORDER BY b.order_seq DESC, b.event_id DESC
         LIMIT 1)
        """;
}
