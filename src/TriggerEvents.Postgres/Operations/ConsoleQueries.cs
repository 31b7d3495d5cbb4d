using Npgsql;
using NpgsqlTypes;

namespace TriggerEvents.Postgres.Operations;

/// <summary>Attempts and failures of one subscription over <see cref="Covered"/>, the time they were counted over.</summary>
internal sealed record SubscriptionRate(string Subscription, long Attempts, long Failures, TimeSpan Covered)
{
    /// <summary>Successful attempts per minute.</summary>
    public double DeliveredPerMinute => PerMinute(Attempts - Failures);

    /// <summary>Attempts per minute.</summary>
    public double AttemptsPerMinute => PerMinute(Attempts);

    /// <summary>The share of attempts that failed; null without attempts.</summary>
    public double? FailureRate => Attempts == 0 ? null : (double)Failures / Attempts;

    /// <summary>Per minute, over at least one second (a burst of attempts within one instant is not an infinite rate).</summary>
    public double PerMinute(long count) => count / Math.Max(Covered.TotalMinutes, 1.0 / 60);
}

/// <summary>
/// The webhook-id a delivery's requests carry: its own single-event id, or, sent in a batch, the
/// batch's id its latest attempt recorded; null while a batched subscription's delivery has
/// not been sent in a batch yet (the batch, and so the id, is formed when it is first claimed).
/// </summary>
internal readonly record struct DeliveryWebhookId(bool Batched, string? BatchWebhookId)
{
    public string? For(long eventId, string subscription) =>
        BatchWebhookId ?? (Batched ? null : Core.Delivery.WebhookId.For(eventId, subscription));
}

/// <summary>One row of a subscription's deliveries, as the console lists them.</summary>
internal sealed record DeliveryRow(
    long EventId, string Status, int Attempts, int? LastStatus, string? LastError, DateTime NextAttemptAt,
    DateTime? DeliveredAt, DateTime UpdatedAt, DateTime CapturedAt, string Operation, string SchemaName, string TableName,
    DeliveryWebhookId WebhookId);

/// <summary>One captured event, whole.</summary>
internal sealed record EventDetail(
    long Id, string Trigger, string SchemaName, string TableName, string Operation, string? OldData, string? NewData,
    string? SessionVariables, string? TraceParent, DateTime CapturedAt, string CapturedBy, string? ConditionError,
    string? ForSubscription);

/// <summary>One subscription's delivery of an event.</summary>
internal sealed record EventDelivery(
    string Subscription, string Status, int Attempts, int? LastStatus, string? LastError, DateTime NextAttemptAt,
    DateTime? DeliveredAt, DeliveryWebhookId WebhookId);

/// <summary>One recorded attempt at delivering an event; <c>BatchWebhookId</c> is the id of the batch request it was part of, null for a single event's.</summary>
internal sealed record EventAttempt(
    string Subscription, int Attempt, DateTime StartedAt, double DurationMs, int? HttpStatus, string? Error, string? ResponseExcerpt,
    string? BatchWebhookId);

/// <summary>
/// Which page of a subscription's deliveries: keyset paging by event id, newest first
/// (<see cref="Before"/> is the last id of the previous page), never an OFFSET, so the thousandth
/// page costs what the first does. Times are capture times, <see cref="Since"/> inclusive.
/// </summary>
internal sealed record DeliveryPage(
    string Subscription, string? Status, long? Before = null, long? EventId = null, DateTimeOffset? Since = null,
    DateTimeOffset? Until = null, int Limit = 50);

/// <summary>
/// The web console's read-only queries. Each reads through an index however large the log and the
/// delivery history grow (ConsoleQueryPlanTests): the console runs beside a busy worker.
/// Actions (retry, purge, pause, resume, replay) go through <see cref="DeadLetters"/>,
/// <see cref="SubscriptionAdmin"/> and <see cref="Replay"/>, as the command line does.
/// </summary>
internal static class ConsoleQueries
{
    /// <summary>The statuses a delivery list may be filtered by; null lists all.</summary>
    public static readonly string[] Statuses = ["pending", "in_flight", "delivered", "dead"];

    /// <summary>Most rows one page may ask for.</summary>
    public const int MaxPage = 500;

    /// <summary>
    /// The smallest event id captured at or after <c>$1</c>, found by a binary search over the
    /// primary key (about 30 index probes for a billion events). The log has only a BRIN index on
    /// <c>captured_at</c>, which cannot find the first event of a time cheaply, and a btree there
    /// would cost every captured row. Ids are given in capture order, so ids and capture times
    /// agree up to the overlap of concurrent transactions (microseconds); the exact time test is
    /// applied to the rows as well. One past the largest id when nothing was captured since.
    /// </summary>
    internal const string FirstIdAtOrAfter = """
        WITH RECURSIVE search (lo, hi) AS (
            SELECT coalesce((SELECT min(id) FROM trigger_events.event_log), 1),
                   coalesce((SELECT max(id) FROM trigger_events.event_log), 0) + 1
            UNION ALL
            SELECT CASE WHEN probe.captured_at >= $1 THEN search.lo ELSE probe.id + 1 END,
                   CASE WHEN probe.captured_at >= $1 THEN (search.lo + search.hi) / 2 ELSE search.hi END
            FROM search
            CROSS JOIN LATERAL (
                SELECT e.id, e.captured_at FROM trigger_events.event_log e
                WHERE e.id >= (search.lo + search.hi) / 2 ORDER BY e.id LIMIT 1
            ) probe
            WHERE search.lo < search.hi
        )
        SELECT lo FROM search WHERE lo >= hi LIMIT 1
        """;

    /// <summary>
    /// Attempts and failures per subscription in the minutes of <c>attempt_counts</c> since
    /// <c>$1</c> (an interval) ago, and the time those minutes cover: from the start of the first
    /// to now, a little more than <c>$1</c>. Each result write adds to its minute (migration
    /// 000028), so a refreshing overview reads a few rows per subscription and worker however busy
    /// the workers are.
    /// </summary>
    internal const string RatesSql = """
        SELECT s.name, sum(c.attempts)::bigint, sum(c.failures)::bigint, now() - date_trunc('minute', now() - $1)
        FROM trigger_events.attempt_counts c
        JOIN trigger_events.subscriptions s ON s.id = c.subscription_id
        WHERE c.minute >= date_trunc('minute', now() - $1)
        GROUP BY s.name
        """;

    /// <summary>How far back the rates of the console's overview and of <c>subscriptions</c> look.</summary>
    public static readonly TimeSpan RateWindow = TimeSpan.FromMinutes(5);

    /// <summary>One event by id (<c>$1</c>).</summary>
    internal const string EventSql = """
        SELECT id, trigger_name, schema_name, table_name, op, old_data::text, new_data::text, session_variables::text,
               traceparent, captured_at, captured_by, condition_error, subscription_name
        FROM trigger_events.event_log WHERE id = $1
        """;

    /// <summary>
    /// Every subscription's delivery of event <c>$1</c>: one primary-key probe per subscription
    /// (deliveries has no index by event id alone, and subscriptions are few). OFFSET 0 keeps the
    /// probe a probe instead of a join the planner might turn into a scan.
    /// </summary>
    internal const string EventDeliveriesSql = $"""
        SELECT s.name, d.status::text, d.attempts, d.last_status, d.last_error, d.next_attempt_at, d.delivered_at,
               d.batch_id IS NOT NULL OR s.batch_max_events IS NOT NULL, {BatchWebhookId}
        FROM trigger_events.subscriptions s
        CROSS JOIN LATERAL (
            SELECT * FROM trigger_events.deliveries dl WHERE dl.subscription_id = s.id AND dl.event_id = $1 OFFSET 0
        ) d
        ORDER BY s.name
        """;

    /// <summary>
    /// The webhook-id of delivery <c>d</c>'s latest batch request, looked up only for a delivery
    /// that was sent in a batch: on its row since migration 000028, else from its attempts (one
    /// probe of attempts_delivery).
    /// </summary>
    private const string BatchWebhookId = """
        (SELECT coalesce(d.last_webhook_id, (
             SELECT a.webhook_id FROM trigger_events.attempts a
             WHERE a.subscription_id = d.subscription_id AND a.event_id = d.event_id
             -- A split batch's attempt is given back and numbered again: the later record is the later request.
             ORDER BY a.attempt DESC, a.id DESC LIMIT 1))
         WHERE d.batch_id IS NOT NULL)
        """;

    /// <summary>
    /// Every recorded attempt at event <c>$1</c> (<c>trigger_events.attempt_history</c>, migration
    /// 000030: the attempts, and the success a delivered row records itself), per subscription by
    /// attempts_delivery and the primary key of deliveries.
    /// </summary>
    internal const string EventAttemptsSql = """
        SELECT s.name, a.attempt, a.started_at, a.duration_ms, a.http_status, a.error, a.response_excerpt, a.webhook_id
        FROM trigger_events.subscriptions s
        -- A lateral subquery, so that both conditions reach both parts of the view: as a join, the
        -- planner read each part whole and joined after.
        CROSS JOIN LATERAL (
            SELECT h.* FROM trigger_events.attempt_history h WHERE h.subscription_id = s.id AND h.event_id = $1 OFFSET 0
        ) a
        ORDER BY a.started_at, a.attempt_id
        """;

    /// <summary>
    /// A page of deliveries: <c>$1</c> subscription id, event ids in [<c>$3</c>, <c>$2</c>),
    /// capture times in [<c>$4</c>, <c>$5</c>) when given, <c>$6</c> rows, newest first. The status,
    /// one of <see cref="Statuses"/>, is written into the text so that the planner sees the partial
    /// index it matches (deliveries_dead, deliveries_pending, deliveries_leased).
    /// </summary>
    internal static string DeliveriesSql(string? status)
    {
        if (status is not null && !Statuses.Contains(status))
        {
            throw new ArgumentException($"unknown delivery status '{status}': one of {string.Join(", ", Statuses)}");
        }

        var statusTest = status is null ? "" : $"AND d.status = '{status}'";
        return $"""
            SELECT d.event_id, d.status::text, d.attempts, d.last_status, left(d.last_error, 300), d.next_attempt_at,
                   d.delivered_at, d.updated_at, e.captured_at, e.op, e.schema_name, e.table_name,
                   d.batch_id IS NOT NULL OR s.batch_max_events IS NOT NULL, {BatchWebhookId}
            FROM trigger_events.deliveries d
            JOIN trigger_events.event_log e ON e.id = d.event_id
            JOIN trigger_events.subscriptions s ON s.id = d.subscription_id
            WHERE d.subscription_id = $1 {statusTest}
              AND d.event_id < $2 AND d.event_id >= $3
              AND ($4::timestamptz IS NULL OR e.captured_at >= $4)
              AND ($5::timestamptz IS NULL OR e.captured_at < $5)
            ORDER BY d.event_id DESC
            LIMIT $6
            """;
    }

    /// <summary>
    /// Attempts and failed attempts per subscription since <paramref name="window"/> ago, counted
    /// by the minute; each with the time its counts cover.
    /// </summary>
    public static async Task<IReadOnlyList<SubscriptionRate>> RatesAsync(NpgsqlDataSource dataSource, TimeSpan window, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(RatesSql);
        command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = window });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<SubscriptionRate>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new SubscriptionRate(reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetFieldValue<TimeSpan>(3)));
        }

        return rows;
    }

    /// <summary>One page of a subscription's deliveries, newest event first; null when there is no such subscription.</summary>
    public static async Task<IReadOnlyList<DeliveryRow>?> DeliveriesAsync(NpgsqlDataSource dataSource, DeliveryPage page, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (page.Status is not null && !Statuses.Contains(page.Status))
        {
            throw new ArgumentException($"unknown delivery status '{page.Status}': one of {string.Join(", ", Statuses)}");
        }

        var subscriptionId = await SubscriptionIdAsync(dataSource, page.Subscription, cancellationToken);
        if (subscriptionId is null)
        {
            return null;
        }

        // Time bounds become event id bounds first, so the page walks the primary key (or a
        // status's partial index) from where the range ends instead of filtering every newer row.
        var upper = page.Before ?? long.MaxValue;
        var lower = 0L;
        if (page.EventId is { } eventId)
        {
            upper = Math.Min(upper, eventId + 1);
            lower = eventId;
        }

        if (page.Until is { } until)
        {
            upper = Math.Min(upper, await FirstIdAtOrAfterAsync(dataSource, until, cancellationToken));
        }

        if (page.Since is { } since)
        {
            lower = Math.Max(lower, await FirstIdAtOrAfterAsync(dataSource, since, cancellationToken));
        }

        await using var command = dataSource.CreateCommand(DeliveriesSql(page.Status));
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId.Value });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = upper });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = lower });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)page.Since ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)page.Until ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = Math.Clamp(page.Limit, 1, MaxPage) });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<DeliveryRow>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new DeliveryRow(
                reader.GetInt64(0), reader.GetString(1), reader.GetInt32(2), NullableInt(reader, 3), NullableString(reader, 4),
                reader.GetDateTime(5), reader.IsDBNull(6) ? null : reader.GetDateTime(6), reader.GetDateTime(7), reader.GetDateTime(8),
                reader.GetString(9), reader.GetString(10), reader.GetString(11), new DeliveryWebhookId(reader.GetBoolean(12), NullableString(reader, 13))));
        }

        return rows;
    }

    /// <summary>The smallest event id captured at or after <paramref name="time"/> (see <see cref="FirstIdAtOrAfter"/>).</summary>
    public static async Task<long> FirstIdAtOrAfterAsync(NpgsqlDataSource dataSource, DateTimeOffset time, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(FirstIdAtOrAfter);
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = time });
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>The event, or null when there is none with this id (never captured, or removed by retention).</summary>
    public static async Task<EventDetail?> EventAsync(NpgsqlDataSource dataSource, long id, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(EventSql);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        return new EventDetail(
            reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4),
            NullableString(reader, 5), NullableString(reader, 6), NullableString(reader, 7), NullableString(reader, 8),
            reader.GetDateTime(9), reader.GetString(10), NullableString(reader, 11), NullableString(reader, 12));
    }

    /// <summary>Every subscription's delivery of event <paramref name="id"/>.</summary>
    public static async Task<IReadOnlyList<EventDelivery>> EventDeliveriesAsync(NpgsqlDataSource dataSource, long id, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(EventDeliveriesSql);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<EventDelivery>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new EventDelivery(
                reader.GetString(0), reader.GetString(1), reader.GetInt32(2), NullableInt(reader, 3), NullableString(reader, 4),
                reader.GetDateTime(5), reader.IsDBNull(6) ? null : reader.GetDateTime(6), new DeliveryWebhookId(reader.GetBoolean(7), NullableString(reader, 8))));
        }

        return rows;
    }

    /// <summary>Every recorded attempt at delivering event <paramref name="id"/>, oldest first.</summary>
    public static async Task<IReadOnlyList<EventAttempt>> EventAttemptsAsync(NpgsqlDataSource dataSource, long id, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(EventAttemptsSql);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<EventAttempt>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new EventAttempt(
                reader.GetString(0), reader.GetInt32(1), reader.GetDateTime(2), reader.GetDouble(3), NullableInt(reader, 4),
                NullableString(reader, 5), NullableString(reader, 6), NullableString(reader, 7)));
        }

        return rows;
    }

    private static async Task<int?> SubscriptionIdAsync(NpgsqlDataSource dataSource, string name, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT id FROM trigger_events.subscriptions WHERE name = $1");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        return await command.ExecuteScalarAsync(cancellationToken) is int id ? id : null;
    }

    private static int? NullableInt(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetInt32(ordinal);

    private static string? NullableString(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);
}
