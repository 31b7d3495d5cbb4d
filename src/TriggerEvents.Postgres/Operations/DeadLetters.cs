using Npgsql;

namespace TriggerEvents.Postgres.Operations;

/// <summary>One dead-lettered delivery.</summary>
internal sealed record DeadLetter(
    string Subscription, long EventId, string TriggerName, string Operation, DateTime CapturedAt,
    int Attempts, int? LastStatus, string? LastError, DateTime DiedAt);

/// <summary>
/// <c>dead list | retry | purge</c>. Retry and purge work in batches of <see cref="BatchSize"/>
/// rows, each its own short transaction, so a large repair never holds many locks for long.
/// </summary>
internal static class DeadLetters
{
    public const int BatchSize = 1000;

    // The filter, shared by every statement; $1 subscription, $2 event id, $3 since, $4 until.
    private const string Filter = """
        d.status = 'dead'
        AND ($1::text IS NULL OR s.name = $1)
        AND ($2::bigint IS NULL OR d.event_id = $2)
        AND ($3::timestamptz IS NULL OR e.captured_at >= $3)
        AND ($4::timestamptz IS NULL OR e.captured_at < $4)
        """;

    /// <summary>The listing: the filter's four parameters, then <c>$5</c> rows.</summary>
    internal const string ListSql = $"""
        SELECT s.name, d.event_id, e.trigger_name, e.op, e.captured_at, d.attempts, d.last_status, d.last_error, d.updated_at
        FROM trigger_events.deliveries d
        JOIN trigger_events.subscriptions s ON s.id = d.subscription_id
        JOIN trigger_events.event_log e ON e.id = d.event_id
        WHERE {Filter}
        ORDER BY d.event_id
        LIMIT $5
        """;

    public static async Task<IReadOnlyList<DeadLetter>> ListAsync(NpgsqlDataSource dataSource, DeliveryFilter filter, int limit, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(ListSql);
        AddFilter(command, filter);
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<DeadLetter>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new DeadLetter(
                reader.GetString(0), reader.GetInt64(1), reader.GetString(2), reader.GetString(3), reader.GetDateTime(4),
                reader.GetInt32(5), reader.IsDBNull(6) ? null : reader.GetInt32(6), reader.IsDBNull(7) ? null : reader.GetString(7),
                reader.GetDateTime(8)));
        }

        return rows;
    }

    /// <summary>How many dead letters match the filter's four parameters.</summary>
    internal const string CountSql = $"""
        SELECT count(*) FROM trigger_events.deliveries d
        JOIN trigger_events.subscriptions s ON s.id = d.subscription_id
        JOIN trigger_events.event_log e ON e.id = d.event_id
        WHERE {Filter}
        """;

    public static async Task<long> CountAsync(NpgsqlDataSource dataSource, DeliveryFilter filter, CancellationToken cancellationToken)
    {
        // The hot path's planner settings, in one round trip and one implicit transaction that
        // they end with: the count walks the dead index and looks each event up by its key. Where
        // dead letters are a few percent of the deliveries the planner would rather read the whole
        // log (and then the whole of deliveries) into a hash join, the slow path on a production log.
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand(Delivery.DeliveryStore.PinPlanSql));
        var count = new NpgsqlBatchCommand(CountSql);
        AddFilter(count.Parameters, filter);
        batch.BatchCommands.Add(count);
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.NextResultAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return reader.GetInt64(0);
    }

    /// <summary>
    /// Makes matching dead letters pending again, with a fresh attempt budget. A dead letter of an
    /// ordered subscription takes a new place in its key, after the events of its key that
    /// continued while it was dead (SPEC "Ordering"), in event order among those retried together.
    /// </summary>
    public static Task<long> RetryAsync(NpgsqlDataSource dataSource, DeliveryFilter filter, IProgress<long>? progress, CancellationToken cancellationToken) =>
        InBatchesAsync(dataSource, filter, """
            UPDATE trigger_events.deliveries d
            SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_owner = NULL, rescheduled_at = now(), updated_at = now(),
                order_seq = numbered.order_seq
            FROM (SELECT b.subscription_id, b.event_id,
                         CASE WHEN b.order_key IS NOT NULL THEN nextval('trigger_events.delivery_order') END AS order_seq
                  FROM batch b
                  ORDER BY b.event_id) numbered
            WHERE d.subscription_id = numbered.subscription_id AND d.event_id = numbered.event_id
            """, progress, cancellationToken);

    /// <summary>Deletes matching dead letters; the events stay in the log (and may be replayed).</summary>
    public static Task<long> PurgeAsync(NpgsqlDataSource dataSource, DeliveryFilter filter, IProgress<long>? progress, CancellationToken cancellationToken) =>
        InBatchesAsync(dataSource, filter, """
            DELETE FROM trigger_events.deliveries d
            USING batch WHERE d.subscription_id = batch.subscription_id AND d.event_id = batch.event_id
            """, progress, cancellationToken);

    private static async Task<long> InBatchesAsync(
        NpgsqlDataSource dataSource, DeliveryFilter filter, string change, IProgress<long>? progress, CancellationToken cancellationToken)
    {
        long total = 0;
        while (true)
        {
            await using var command = dataSource.CreateCommand($"""
                WITH batch AS (
                    SELECT d.subscription_id, d.event_id, d.order_key
                    FROM trigger_events.deliveries d
                    JOIN trigger_events.subscriptions s ON s.id = d.subscription_id
                    JOIN trigger_events.event_log e ON e.id = d.event_id
                    WHERE {Filter}
                    LIMIT {BatchSize}
                    FOR UPDATE OF d SKIP LOCKED
                )
                {change}
                """);
            AddFilter(command, filter);
            var changed = await command.ExecuteNonQueryAsync(cancellationToken);
            total += changed;
            progress?.Report(total);
            if (changed < BatchSize)
            {
                return total;
            }
        }
    }

    internal static void AddFilter(NpgsqlCommand command, DeliveryFilter filter) => AddFilter(command.Parameters, filter);

    private static void AddFilter(NpgsqlParameterCollection parameters, DeliveryFilter filter)
    {
        parameters.Add(new NpgsqlParameter { Value = (object?)filter.Subscription ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        parameters.Add(new NpgsqlParameter { Value = (object?)filter.EventId ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint });
        parameters.Add(new NpgsqlParameter { Value = (object?)filter.Since ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
        parameters.Add(new NpgsqlParameter { Value = (object?)filter.Until ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
    }
}
