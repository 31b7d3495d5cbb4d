using Npgsql;
using NpgsqlTypes;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Postgres.Delivery;

/// <summary>
/// The worker's hot-path queries: fan committed events out into deliveries, claim under a lease,
/// record results while the lease is held, extend and release leases, and the idle signal that
/// gates capture's NOTIFY.
/// </summary>
internal sealed class DeliveryStore(NpgsqlDataSource dataSource)
{
    /// <summary>
    /// Locks the subscription row until the claim commits, so claimers on every replica take
    /// turns. It has to be a statement of its own, before <see cref="ClaimSql"/>: a statement
    /// reads with the snapshot it started with, so a claim that locked the row itself would,
    /// after waiting for another claim, count that claim's deliveries as not yet in flight and
    /// take <c>max_in_flight</c> again (ReplicaTests, ClaimLimitTests). In READ COMMITTED the
    /// next statement takes a fresh snapshot, which sees every claim committed before the lock.
    /// </summary>
    /// <remarks>
    /// It also pins the claim's plan for the rest of this transaction (see <see cref="PinnedPlan"/>),
    /// and returns the claim's time by the database clock, which bounds where the next claim looks.
    /// </remarks>
    internal const string LockSubscriptionSql = $"""
        SELECT now(), {PinnedPlan} FROM trigger_events.subscriptions WHERE id = $1 FOR UPDATE
        """;

    /// <summary>
    /// Planner settings for the rest of a hot-path transaction (<c>set_config(..., true)</c> ends
    /// with it). Every hot-path statement is a short walk down an index; the planner must never
    /// think otherwise. Right after a burst of captures the statistics still describe an almost
    /// empty queue: the planner then chose a bitmap scan of the whole backlog and sorted it on
    /// disk to find the oldest hundred (60 ms a claim at 100,000 pending). And the statements are
    /// prepared: a generic plan made while the queue was empty (a sequential scan, a hash join
    /// sized by a LIMIT it cannot see) would otherwise be kept for the life of the connection.
    /// With these off only the ordered index scans and nested loops are left, whatever the
    /// statistics say; a plain index scan also marks the entries of finished leases dead for the
    /// next count. JIT is off because these statements take well under a millisecond.
    /// </summary>
    private const string PinnedPlan = """
        set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
        set_config('enable_sort', 'off', true), set_config('enable_hashjoin', 'off', true),
        set_config('enable_mergejoin', 'off', true), set_config('jit', 'off', true)
        """;

    /// <summary>
    /// Turns the events committed since each subscription's place in the log into deliveries
    /// (<c>trigger_events.fan_out</c>, migration 000003). It goes first in a claim's round trip, so
    /// the claim that follows in the same transaction takes what it made at once.
    /// </summary>
    internal const string FanOutSql = "SELECT trigger_events.fan_out($1, $2)";

    /// <summary><see cref="PinnedPlan"/> on its own, ahead of the result write.</summary>
    private const string PinPlanSql = $"SELECT {PinnedPlan}";

    /// <summary>
    /// Claims up to <c>$3</c> due deliveries of one subscription, after <see cref="LockSubscriptionSql"/>
    /// in the same transaction, so claimers on every replica together never exceed
    /// <c>max_in_flight</c>; delivery rows are taken with SKIP LOCKED. Due means pending and past
    /// <c>next_attempt_at</c>, or (when <c>$7</c>) in flight with an expired lease: a crashed
    /// worker's, taken over first as the oldest work. Each kind is read from its own partial index.
    /// </summary>
    /// <remarks>
    /// Pending rows are read in (<c>next_attempt_at</c>, <c>event_id</c>) order after a cursor
    /// (<c>$5</c>, <c>$6</c>): the last row this worker claimed. Every claimed row leaves a dead
    /// entry at the head of the index until vacuum removes it, and a scan from the start walked
    /// them all: a claim read 150 index pages, growing, 150,000 events into a drain. A capture's
    /// <c>next_attempt_at</c> is its transaction's start, so a transaction that commits after
    /// later ones lands behind the cursor: the scan therefore never starts later than
    /// <see cref="CommitWindow"/> before the previous claim (<c>$8</c>), whose snapshot could not
    /// see what committed after it, however long ago that claim was (an idle wait, a poll
    /// interval). <see cref="ClaimCursor.Sweep"/> (-infinity) starts from the head.
    /// </remarks>
    internal const string ClaimSql = $$"""
        WITH capacity AS (
            SELECT greatest(0, s.max_in_flight - (
                       SELECT count(*) FROM trigger_events.deliveries d
                       WHERE d.subscription_id = $1 AND d.status = 'in_flight' AND d.next_attempt_at > now())) AS free
            FROM trigger_events.subscriptions s WHERE s.id = $1
        ), expired AS (
            SELECT d.subscription_id, d.event_id, true AS took_over, d.next_attempt_at AS due_at
            FROM trigger_events.deliveries d
            WHERE $7 AND d.subscription_id = $1 AND d.status = 'in_flight' AND d.next_attempt_at <= now()
              AND (SELECT free FROM capacity) > 0
            ORDER BY d.next_attempt_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ), start AS (
            SELECT CASE WHEN $5 < w.since THEN $5 ELSE w.since END AS due_at,
                   CASE WHEN $5 < w.since THEN $6 ELSE 0 END AS event_id
            FROM (SELECT $8 - interval '{{CommitWindow}}' AS since) w
        ), pending AS (
            -- LIMIT is the plain batch size so the planner sizes the join below from it (a
            -- computed LIMIT is estimated at a tenth of the table, which chose a hash join over a
            -- sequential scan of every delivery, history included). The capacity cap is applied
            -- by position instead.
            SELECT d.subscription_id, d.event_id, false AS took_over, d.next_attempt_at AS due_at
            FROM trigger_events.deliveries d
            WHERE d.subscription_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= now()
              AND (d.next_attempt_at, d.event_id) > ((SELECT due_at FROM start), (SELECT event_id FROM start))
              AND (SELECT free FROM capacity) > 0
            ORDER BY d.next_attempt_at, d.event_id
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ), allowed AS (
            SELECT due.*, row_number() OVER () AS position
            FROM (SELECT * FROM expired UNION ALL SELECT * FROM pending) due
        ), claimed AS (
            UPDATE trigger_events.deliveries d
            SET status = 'in_flight', lease_owner = $2, attempts = d.attempts + 1,
                next_attempt_at = now() + $4, updated_at = now()
            FROM allowed
            WHERE d.subscription_id = allowed.subscription_id AND d.event_id = allowed.event_id
              AND allowed.position <= least($3, (SELECT free FROM capacity))
            RETURNING d.event_id, d.attempts, allowed.took_over, allowed.due_at, d.rescheduled_at
        )
        SELECT e.id, e.captured_at, e.trigger_name, e.schema_name, e.table_name, e.op,
               e.old_data, e.new_data, e.session_variables, e.traceparent, c.attempts, c.took_over, c.due_at, c.rescheduled_at,
               e.condition_error
        FROM claimed c JOIN trigger_events.event_log e ON e.id = c.event_id
        """;

    /// <summary>
    /// How long before the previous claim a cursor claim still looks: a transaction that captured
    /// up to this long before it committed is claimed by the next claim; a longer one waits for
    /// the next sweep from the head of the queue. A quarter of a second was too short: under
    /// flat-out writers on two cores, single-row transactions now and then took longer than that
    /// to commit and were delivered seconds late. Its cost is an index walk over the entries of
    /// rows claimed within it, which is short while claims keep up (each is marked dead as soon
    /// as a scan finds its row claimed), and a backlog's claims start at the cursor anyway.
    /// </summary>
    private const string CommitWindow = "1 second";

    // The statements below find held rows by key and lease_owner alone: only in-flight rows
    // have an owner (recording and releasing clear it). A status condition would let the
    // planner pick the partial claim index, which cannot look rows up by event: with stale
    // statistics after a burst of captures, every result write then scanned the whole backlog.

    /// <summary>
    /// Applies results only where this owner still holds the lease: a worker whose lease expired
    /// and was taken over cannot overwrite the newer owner's state. Every attempt is logged, once:
    /// when a write is tried again (<c>$12</c>) after one whose outcome was not known (the
    /// connection dropped, perhaps after the commit), an attempt this worker already logged is
    /// not logged again.
    /// </summary>
    internal const string RecordSql = """
        WITH result AS (
            SELECT * FROM unnest($2::int[], $3::bigint[], $4::int[], $5::trigger_events.delivery_status[],
                                 $6::double precision[], $7::int[], $8::text[], $9::timestamptz[],
                                 $10::double precision[], $11::text[])
                AS r(subscription_id, event_id, attempt, status, retry_ms, http_status, error, started_at, duration_ms, excerpt)
        ), applied AS (
            UPDATE trigger_events.deliveries d
            SET status = r.status,
                next_attempt_at = CASE WHEN r.status = 'pending'
                                       THEN now() + r.retry_ms * interval '1 millisecond'
                                       ELSE d.next_attempt_at END,
                lease_owner = NULL,
                last_status = r.http_status,
                last_error = r.error,
                delivered_at = CASE WHEN r.status = 'delivered' THEN now() END,
                updated_at = now()
            FROM result r
            WHERE d.subscription_id = r.subscription_id AND d.event_id = r.event_id
              AND d.lease_owner = $1
            RETURNING d.subscription_id, d.event_id
        ), logged AS (
            INSERT INTO trigger_events.attempts
                (subscription_id, event_id, attempt, started_at, duration_ms, http_status, error, response_excerpt, worker)
            SELECT r.subscription_id, r.event_id, r.attempt, r.started_at, r.duration_ms, r.http_status, r.error, r.excerpt, $1
            FROM result r
            WHERE NOT $12 OR NOT EXISTS (
                SELECT FROM trigger_events.attempts a
                WHERE a.subscription_id = r.subscription_id AND a.event_id = r.event_id
                  AND a.attempt = r.attempt AND a.worker = $1)
        )
        SELECT count(*) FROM applied
        """;

    // SKIP LOCKED: a row locked now is having its result recorded, which ends the lease anyway.
    // Waiting for it instead deadlocked with the recorder, which locks the same rows in another
    // order.
    private const string ExtendSql = """
        WITH held AS (
            SELECT d.subscription_id, d.event_id
            FROM trigger_events.deliveries d
            JOIN unnest($2::int[], $3::bigint[]) AS k(subscription_id, event_id)
              ON d.subscription_id = k.subscription_id AND d.event_id = k.event_id
            WHERE d.lease_owner = $1
            FOR UPDATE OF d SKIP LOCKED
        )
        UPDATE trigger_events.deliveries d SET next_attempt_at = now() + $4, updated_at = now()
        FROM held
        WHERE d.subscription_id = held.subscription_id AND d.event_id = held.event_id
        """;

    // A released delivery was never attempted, so its attempt is given back.
    private const string ReleaseSql = """
        UPDATE trigger_events.deliveries d
        SET status = 'pending', lease_owner = NULL, attempts = greatest(d.attempts - 1, 0),
            next_attempt_at = now(), updated_at = now()
        FROM unnest($2::int[], $3::bigint[]) AS k(subscription_id, event_id)
        WHERE d.subscription_id = k.subscription_id AND d.event_id = k.event_id
          AND d.lease_owner = $1
        """;

    private const string SetIdleSql = """
        UPDATE trigger_events.worker_signal SET idle = $1, updated_at = now() WHERE idle IS DISTINCT FROM $1
        """;

    /// <summary>Fans the subscription's committed events out, then claims from the head of its queue, expired leases included.</summary>
    public async Task<IReadOnlyList<ClaimedDelivery>> ClaimAsync(
        int subscriptionId, Guid owner, int limit, TimeSpan lease, CancellationToken cancellationToken) =>
        (await ClaimAsync(subscriptionId, owner, limit, lease, ClaimCursor.Sweep, takeOverExpired: true,
            new FanOutRequest([subscriptionId], Math.Max(limit, 10_000)), cancellationToken)).Deliveries;

    /// <summary>
    /// Claims pending deliveries after <paramref name="cursor"/> (see <see cref="ClaimSql"/>),
    /// and expired leases first when <paramref name="takeOverExpired"/>; returns them with the
    /// cursor the next claim resumes from.
    /// </summary>
    public async Task<ClaimBatch> ClaimAsync(
        int subscriptionId, Guid owner, int limit, TimeSpan lease, ClaimCursor cursor, bool takeOverExpired, CancellationToken cancellationToken) =>
        await ClaimAsync(subscriptionId, owner, limit, lease, cursor, takeOverExpired, fanOut: null, cancellationToken);

    /// <summary>
    /// As above, after fanning out the events committed for <paramref name="fanOut"/>'s
    /// subscriptions (<see cref="FanOutSql"/>) in the same round trip and transaction.
    /// </summary>
    public async Task<ClaimBatch> ClaimAsync(
        int subscriptionId, Guid owner, int limit, TimeSpan lease, ClaimCursor cursor, bool takeOverExpired, FanOutRequest? fanOut,
        CancellationToken cancellationToken)
    {
        // One round trip: a batch runs in one implicit transaction, each statement with its own snapshot.
        await using var batch = dataSource.CreateBatch();
        if (fanOut is not null)
        {
            var fan = new NpgsqlBatchCommand(FanOutSql);
            fan.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = fanOut.SubscriptionIds });
            fan.Parameters.Add(new NpgsqlParameter<int> { TypedValue = fanOut.MaxEvents });
            batch.BatchCommands.Add(fan);
        }

        var lockSubscription = new NpgsqlBatchCommand(LockSubscriptionSql);
        lockSubscription.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
        batch.BatchCommands.Add(lockSubscription);
        var command = new NpgsqlBatchCommand(ClaimSql);
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = owner });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = lease, NpgsqlDbType = NpgsqlDbType.Interval });
        // DateTimeOffset.MinValue is written as -infinity.
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = cursor.DueAt });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = cursor.EventId });
        command.Parameters.Add(new NpgsqlParameter<bool> { TypedValue = takeOverExpired });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = cursor.ClaimedAt });
        batch.BatchCommands.Add(command);
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        if (fanOut is not null)
        {
            // How many deliveries the fan-out made: the claim below counts what it takes.
            await reader.NextResultAsync(cancellationToken);
        }

        // No row: the subscription is gone, and so is anything to claim for it.
        var claimedAt = await reader.ReadAsync(cancellationToken) ? reader.GetFieldValue<DateTimeOffset>(0) : cursor.ClaimedAt;
        await reader.NextResultAsync(cancellationToken);
        var claimed = new List<ClaimedDelivery>();
        while (await reader.ReadAsync(cancellationToken))
        {
            var webhookEvent = new WebhookEvent(
                Id: reader.GetInt64(0),
                CapturedAt: reader.GetFieldValue<DateTimeOffset>(1),
                TriggerName: reader.GetString(2),
                TableSchema: reader.GetString(3),
                TableName: reader.GetString(4),
                Operation: reader.GetString(5),
                OldRow: reader.IsDBNull(6) ? null : reader.GetString(6),
                NewRow: reader.IsDBNull(7) ? null : reader.GetString(7),
                SessionVariables: reader.IsDBNull(8) ? null : reader.GetString(8),
                TraceParent: reader.IsDBNull(9) ? null : reader.GetString(9),
                ConditionError: reader.IsDBNull(14) ? null : reader.GetString(14));
            claimed.Add(new ClaimedDelivery(
                subscriptionId, webhookEvent, reader.GetInt32(10), reader.GetBoolean(11), reader.GetFieldValue<DateTimeOffset>(12),
                Rescheduled: !reader.IsDBNull(13)));
        }

        return new ClaimBatch(claimed, cursor.After(claimed, claimedAt));
    }

    /// <summary>
    /// Records results; returns how many were applied (the rest had lost their lease).
    /// <paramref name="writtenBefore"/>: an earlier write of these results failed without a
    /// known outcome, so some may be recorded already (see <see cref="RecordSql"/>).
    /// </summary>
    public async Task<int> RecordAsync(Guid owner, IReadOnlyList<DeliveryResult> results, bool writtenBefore, CancellationToken cancellationToken)
    {
        if (results.Count == 0)
        {
            return 0;
        }

        // One round trip, one implicit transaction: the plan settings, then the write.
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand(PinPlanSql));
        var command = new NpgsqlBatchCommand(RecordSql);
        batch.BatchCommands.Add(command);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = owner });
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. results.Select(r => r.Key.SubscriptionId)] });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = [.. results.Select(r => r.Key.EventId)] });
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. results.Select(r => r.Attempt)] });
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = [.. results.Select(r => StatusName(r.Kind))], NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter<double[]> { TypedValue = [.. results.Select(r => r.RetryDelay.TotalMilliseconds)] });
        command.Parameters.Add(new NpgsqlParameter<int?[]> { TypedValue = [.. results.Select(r => r.HttpStatus)] });
        command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = [.. results.Select(r => AsText(r.Error))] });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]> { TypedValue = [.. results.Select(r => r.StartedAt)] });
        command.Parameters.Add(new NpgsqlParameter<double[]> { TypedValue = [.. results.Select(r => r.Duration.TotalMilliseconds)] });
        command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = [.. results.Select(r => AsText(r.ResponseExcerpt))] });
        command.Parameters.Add(new NpgsqlParameter<bool> { TypedValue = writtenBefore });
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.NextResultAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (int)reader.GetInt64(0);
    }

    /// <summary>Pushes the lease of deliveries still in progress forward.</summary>
    public Task ExtendLeasesAsync(Guid owner, IReadOnlyCollection<DeliveryKey> held, TimeSpan lease, CancellationToken cancellationToken) =>
        held.Count == 0 ? Task.CompletedTask : ExecuteForKeysAsync(ExtendSql, owner, held, lease, cancellationToken);

    /// <summary>Gives back deliveries this worker will not attempt (shutdown).</summary>
    public Task ReleaseAsync(Guid owner, IReadOnlyCollection<DeliveryKey> held, CancellationToken cancellationToken) =>
        held.Count == 0 ? Task.CompletedTask : ExecuteForKeysAsync(ReleaseSql, owner, held, null, cancellationToken);

    /// <summary>
    /// Tells capture whether a worker is idle (the next capture sends a wake-up) or busy (none);
    /// true when the flag changed.
    /// </summary>
    public async Task<bool> SetIdleAsync(bool idle, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(SetIdleSql);
        command.Parameters.Add(new NpgsqlParameter<bool> { TypedValue = idle });
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    private async Task ExecuteForKeysAsync(string sql, Guid owner, IReadOnlyCollection<DeliveryKey> keys, TimeSpan? lease, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(sql);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = owner });
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. keys.Select(k => k.SubscriptionId)] });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = [.. keys.Select(k => k.EventId)] });
        if (lease is { } duration)
        {
            command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = duration, NpgsqlDbType = NpgsqlDbType.Interval });
        }

        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// PostgreSQL text cannot hold U+0000, which a receiver's response body may contain: one such
    /// excerpt would fail the write of its whole batch of results, on every retry.
    /// </summary>
    private static string? AsText(string? value) => value?.Replace("\0", "\uFFFD", StringComparison.Ordinal);

    private static string StatusName(DeliveryResultKind kind) => kind switch
    {
        DeliveryResultKind.Delivered => "delivered",
        DeliveryResultKind.Retry => "pending",
        DeliveryResultKind.Dead => "dead",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };
}
