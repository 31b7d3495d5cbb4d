using Npgsql;

namespace TriggerEvents.Postgres.Operations;

/// <summary>What a replay touched: events in range, and how many of them were scheduled (the rest were in flight).</summary>
internal sealed record ReplayResult(long Events, long Scheduled);

/// <summary>
/// <c>replay</c>: schedules captured events for delivery to a subscription again, including
/// events captured before the subscription existed. A delivery already in flight is left to
/// finish; every other one becomes pending with a fresh attempt budget. The webhook-id stays
/// the same (SPEC: stable across redeliveries), so receivers that drop duplicates by id will
/// drop a replayed event they already have.
/// </summary>
internal static class Replay
{
    public const int BatchSize = 1000;

    // $1 trigger, $2 operations, $3 since, $4 until, $5 after id (keyset), $6 event id, $7 the
    // subscription's id. READ events a backfill wrote for another subscription are that one's only.
    // Events beyond the subscription's place in the log (it is paused, or behind) are left to its
    // fan-out, which delivers them anyway and in order: replayed ahead of it, an ordered
    // subscription's later event was numbered before its key's earlier ones and went first.
    private const string Events = """
        SELECT e.id FROM trigger_events.event_log e
        WHERE e.trigger_name = $1 AND e.op = ANY ($2)
          AND e.captured_at >= $3 AND ($4::timestamptz IS NULL OR e.captured_at < $4)
          AND ($6::bigint IS NULL OR e.id = $6)
          AND (e.subscription_name IS NULL
               OR e.subscription_name = (SELECT s.name FROM trigger_events.subscriptions s WHERE s.id = $7))
          AND (pg_visible_in_snapshot(e.transaction_id,
                   (SELECT sp.position FROM trigger_events.subscription_positions sp WHERE sp.subscription_id = $7))
               OR EXISTS (SELECT FROM trigger_events.deliveries d WHERE d.subscription_id = $7 AND d.event_id = e.id))
        """;

    /// <summary>How many captured events a replay with these bounds would schedule.</summary>
    public static async Task<long> CountAsync(
        NpgsqlDataSource dataSource, string subscription, string? trigger, DateTimeOffset since, DateTimeOffset? until, long? eventId,
        CancellationToken cancellationToken)
    {
        var (subscriptionId, subscriptionTrigger, operations) = await FindSubscriptionAsync(dataSource, subscription, cancellationToken);
        await using var count = dataSource.CreateCommand($"SELECT count(*) FROM ({Events}) x");
        AddParameters(count.Parameters, trigger ?? subscriptionTrigger, operations, since, until, 0, eventId);
        count.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
        return (long)(await count.ExecuteScalarAsync(cancellationToken))!;
    }

    public static async Task<ReplayResult> RunAsync(
        NpgsqlDataSource dataSource, string subscription, string? trigger, DateTimeOffset since, DateTimeOffset? until, long? eventId,
        IProgress<long>? progress, CancellationToken cancellationToken)
    {
        var (subscriptionId, subscriptionTrigger, operations) = await FindSubscriptionAsync(dataSource, subscription, cancellationToken);
        trigger ??= subscriptionTrigger;
        long scheduled = 0;
        long seen = 0;
        var after = 0L;
        while (true)
        {
            // One transaction: retention's gate, then the batch, which so never schedules an event
            // a retention batch is deleting (Retention.ScheduleGateKey).
            await using var batchCommands = dataSource.CreateBatch();
            batchCommands.BatchCommands.Add(new NpgsqlBatchCommand(Retention.HoldScheduleGateSql));
            var command = new NpgsqlBatchCommand($"""
                WITH batch AS (
                    {Events} AND e.id > $5 ORDER BY e.id LIMIT {BatchSize}
                ), undone AS MATERIALIZED (
                    -- A delivered row records its success itself (migration 000028): logged
                    -- before the row is scheduled again, so that the event's history keeps it.
                    -- Every row of the batch is locked and read as it is then, so that a success
                    -- recorded since this statement began is read as the update below finds it
                    -- (materialized: inlined, the filter below would be applied before the lock,
                    -- to the rows as this statement's snapshot has them), in event order, as the
                    -- upsert below takes them.
                    SELECT d.subscription_id, d.event_id, d.status, d.attempts, d.last_started_at, d.last_duration_ms, d.last_status,
                           d.last_webhook_id
                    FROM trigger_events.deliveries d JOIN batch ON d.subscription_id = $7 AND d.event_id = batch.id
                    ORDER BY d.event_id
                    FOR UPDATE OF d
                ), kept AS (
                    INSERT INTO trigger_events.attempts (subscription_id, event_id, attempt, started_at, duration_ms, http_status, webhook_id)
                    SELECT u.subscription_id, u.event_id, u.attempts, u.last_started_at, u.last_duration_ms, u.last_status, u.last_webhook_id
                    FROM undone u
                    WHERE u.status = 'delivered' AND u.last_started_at IS NOT NULL
                    RETURNING 1
                ), scheduled AS (
                    -- An ordered subscription's replayed events get their key and a place after
                    -- everything its key has now (migration 000008), numbered in log order. One
                    -- still waiting to be delivered keeps its place, and a parked one stays parked
                    -- (migration 000016): moved behind its key's later events, it would reach the
                    -- receiver after them.
                    INSERT INTO trigger_events.deliveries (subscription_id, event_id, rescheduled_at, order_key, order_seq)
                    SELECT $7, k.id, now(), k.key, CASE WHEN k.key IS NOT NULL THEN nextval('trigger_events.delivery_order') END
                    FROM (SELECT batch.id, trigger_events.delivery_order_key($7, batch.id) AS key FROM batch) k
                    -- After the successes are logged: run later, it would find their rows
                    -- updated by this statement already, which a lock skips.
                    WHERE (SELECT count(*) FROM kept) >= 0
                    ORDER BY k.id
                    ON CONFLICT (subscription_id, event_id) DO UPDATE
                    SET status = 'pending', attempts = 0,
                        next_attempt_at = CASE WHEN deliveries.status = 'pending' AND deliveries.next_attempt_at = 'infinity'
                                               THEN deliveries.next_attempt_at ELSE now() END,
                        lease_owner = NULL,
                        last_status = NULL, last_error = NULL, delivered_at = NULL, rescheduled_at = now(), updated_at = now(),
                        last_started_at = NULL, last_duration_ms = NULL, last_webhook_id = NULL,
                        order_key = CASE WHEN deliveries.status = 'pending' THEN deliveries.order_key ELSE EXCLUDED.order_key END,
                        order_seq = CASE WHEN deliveries.status = 'pending' THEN deliveries.order_seq ELSE EXCLUDED.order_seq END
                    WHERE deliveries.status <> 'in_flight'
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM scheduled), (SELECT max(id) FROM batch)
                """);
            AddParameters(command.Parameters, trigger, operations, since, until, after, eventId);
            command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
            batchCommands.BatchCommands.Add(command);
            await using var reader = await batchCommands.ExecuteReaderAsync(cancellationToken);
            await reader.NextResultAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            var batchSize = reader.GetInt64(0);
            scheduled += reader.GetInt64(1);
            seen += batchSize;
            progress?.Report(seen);
            if (batchSize < BatchSize)
            {
                return new ReplayResult(seen, scheduled);
            }

            after = reader.GetInt64(2);
        }
    }

    private static async Task<(int Id, string Trigger, string[] Operations)> FindSubscriptionAsync(
        NpgsqlDataSource dataSource, string subscription, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT id, trigger_name, operations FROM trigger_events.subscriptions WHERE name = $1");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = subscription });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            throw new ArgumentException($"no subscription named '{subscription}' is registered (a worker registers the YAML file's subscriptions when it starts)");
        }

        return (reader.GetInt32(0), reader.GetString(1), reader.GetFieldValue<string[]>(2));
    }

    private static void AddParameters(NpgsqlParameterCollection parameters, string trigger, string[] operations, DateTimeOffset since, DateTimeOffset? until, long after, long? eventId)
    {
        parameters.Add(new NpgsqlParameter<string> { TypedValue = trigger });
        parameters.Add(new NpgsqlParameter<string[]> { TypedValue = operations });
        parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = since });
        parameters.Add(new NpgsqlParameter { Value = (object?)until ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
        parameters.Add(new NpgsqlParameter<long> { TypedValue = after });
        parameters.Add(new NpgsqlParameter { Value = (object?)eventId ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint });
    }
}
