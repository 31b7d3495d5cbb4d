using Npgsql;
using NpgsqlTypes;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Postgres.Delivery;

/// <summary>How one attempt's outcome moves a circuit breaker (SPEC "Protecting targets").</summary>
internal enum BreakerSignal
{
    /// <summary>A 2xx.</summary>
    Success,

    /// <summary>A timeout, a connection error or a 5xx: what opens the circuit.</summary>
    Failure,

    /// <summary>Any other answer (3xx, 4xx, 410, 429): the target is there, so it counts as an attempt but not as a failure.</summary>
    Other,
}

/// <summary>
/// What a result tells the subscription's row besides the delivery's own: the breaker signal (only
/// for a subscription with a breaker) and how long a 429 or 503 with <c>Retry-After</c> holds the
/// whole subscription back (capped at <c>max_interval</c>).
/// </summary>
internal readonly record struct TargetSignal(BreakerSignal? Breaker, TimeSpan? Hold);

/// <summary>What the subscription's row said after a claim of a protected subscription.</summary>
/// <param name="WaitFor">How long until the next claim can take anything: a hold, an open circuit or an empty bucket; null when now.</param>
/// <param name="RateLimited">The rate limit left due deliveries behind in this claim.</param>
/// <param name="Circuit">closed, open or half_open.</param>
internal sealed record TargetProtectionState(TimeSpan? WaitFor, bool RateLimited, string Circuit);

/// <summary>A result write opened a subscription's circuit, and perhaps paused it.</summary>
internal readonly record struct CircuitOpened(int SubscriptionId, int OpensInARow, bool Paused);

/// <summary>
/// The SQL of the rate limit, the Retry-After hold and the circuit breaker, all kept on the
/// subscription's row (migration 000007), which every claim locks first: replicas share them by
/// taking turns there.
/// </summary>
internal static class TargetProtectionQueries
{
    /// <summary>
    /// <see cref="DeliveryStore.ClaimSql"/>'s <c>capacity</c>: nothing while a Retry-After holds
    /// the subscription back or its circuit is open; after <c>open_for</c> one probe request, taken
    /// once nothing else of it is in flight (a probe's expired lease frees the way for the next).
    /// </summary>
    internal const string HeldBack = $$"""
        WHEN s.held_until > {{ClaimProtocol.Now}} THEN 0
        WHEN s.circuit = 'open' AND s.circuit_changed_at + s.breaker_open_for > {{ClaimProtocol.Now}} THEN 0
        WHEN s.circuit <> 'closed' THEN CASE WHEN f.in_flight = 0 THEN 1 ELSE 0 END
        """;

    /// <summary>
    /// The token bucket refilled to the claim's time: <c>rate_per_second</c> a second, up to one
    /// second's worth (at least one request); NULL without a rate limit. A claim whose
    /// transaction started before the last one's counts no time backwards.
    /// </summary>
    internal const string Tokens = $$"""
        CASE WHEN s.rate_per_second IS NOT NULL THEN
            least(greatest(s.rate_per_second, 1),
                  coalesce(s.tokens + s.rate_per_second * greatest(0, extract(epoch FROM {{ClaimProtocol.Now}} - s.tokens_at)::double precision),
                           greatest(s.rate_per_second, 1)))
        END
        """;

    /// <summary>
    /// <see cref="DeliveryStore.ClaimSql"/>'s last part: the requests it took come out of the
    /// bucket, an open circuit past <c>open_for</c> whose probe was taken is half open, and a claim
    /// that left due deliveries behind for want of tokens is marked (<c>rate_limited_total</c>).
    /// Only a subscription with a rate limit or a breaker is written: the others' claims write
    /// nothing here.
    /// </summary>
    internal const string Spend = $$"""
        spent AS (
            UPDATE trigger_events.subscriptions s
            SET tokens = c.tokens - n.requests,
                tokens_at = greatest(s.tokens_at, {{ClaimProtocol.Now}}),
                rate_limited_at = CASE WHEN least(n.due, $10, c.free) > c.budget THEN {{ClaimProtocol.Now}} ELSE s.rate_limited_at END,
                circuit = CASE WHEN s.circuit = 'open' AND n.requests > 0 THEN 'half_open' ELSE s.circuit END,
                circuit_changed_at = CASE WHEN s.circuit = 'open' AND n.requests > 0 THEN {{ClaimProtocol.Now}} ELSE s.circuit_changed_at END
            FROM capacity c,
                 -- Requests: a batch is one (unit_id, migration 000009).
                 (SELECT count(DISTINCT claimed.unit_id) FILTER (WHERE claimed.status = 'in_flight') AS requests,
                         (SELECT count(DISTINCT allowed.unit_id) FROM allowed) AS due
                  FROM claimed) n
            WHERE s.id = $1 AND (s.rate_per_second IS NOT NULL OR s.breaker_failure_rate IS NOT NULL)
        )
        """;

    /// <summary>
    /// After the claim of a protected subscription, in its transaction: how long until a claim can
    /// take anything again, so the worker sleeps until then instead of claiming nothing in a loop.
    /// A half-open circuit waits for its probe's result, which wakes the worker anyway.
    /// </summary>
    internal const string StateSql = """
        SELECT greatest(s.held_until - coalesce($2::timestamptz, now()),
                        CASE WHEN s.circuit = 'open' THEN s.circuit_changed_at + s.breaker_open_for - coalesce($2::timestamptz, now()) END,
                        CASE WHEN s.tokens < 1 THEN (1 - s.tokens) / s.rate_per_second * interval '1 second' END),
               coalesce(s.rate_limited_at = coalesce($2::timestamptz, now()), false), s.circuit
        FROM trigger_events.subscriptions s WHERE s.id = $1
        """;

    /// <summary>
    /// In the result write's round trip and transaction, after the results: holds subscriptions
    /// back for a Retry-After, and moves their breakers. Attempts and failures are counted in a
    /// window that starts again after <c>breaker_window</c>; a closed circuit opens when at least
    /// <c>breaker_min_requests</c> attempts of the window failed at <c>breaker_failure_rate</c> or
    /// more; a half-open one closes on its probe's answer and opens again on its failure. Results
    /// arriving while it is open (requests sent before it opened) change nothing. The
    /// <c>breaker_pause_after</c>-th open in a row pauses the subscription, saying why.
    /// </summary>
    /// <remarks>
    /// Every result counts, also one whose lease had moved on: it is still what the target
    /// answered. The rows are locked in id order first, and read as locked (a concurrent write's
    /// counts are not lost): two result writes never wait for each other in a circle, and claims
    /// never wait for a result write's delivery rows (SKIP LOCKED). A write tried again after an
    /// unknown outcome may count its results twice: one batch more in a window's rate, while a
    /// hold is the same however often it is written.
    /// </remarks>
    internal const string RecordSql = """
        WITH r AS (
            SELECT r.* FROM unnest($1::int[], $2::text[], $3::double precision[], $4::text[], $5::bigint[], $6::int[])
                AS r(subscription_id, signal, hold_ms, error, event_id, attempt)
            -- A write tried again after one whose outcome was not known counts only the requests
            -- whose attempts this transaction recorded: the others were counted by the write that
            -- recorded them, if it committed (DeliveryStore.RecordSql records each attempt once:
            -- a success on its delivery's row, the others in attempts).
            WHERE NOT $7 OR EXISTS (
                SELECT FROM trigger_events.attempts a
                WHERE a.subscription_id = r.subscription_id AND a.event_id = r.event_id AND a.attempt = r.attempt
                  AND a.xmin = pg_current_xact_id()::xid)
               OR EXISTS (
                SELECT FROM trigger_events.deliveries d
                WHERE d.subscription_id = r.subscription_id AND d.event_id = r.event_id AND d.attempts = r.attempt
                  AND d.status = 'delivered' AND d.xmin = pg_current_xact_id()::xid)
        ), a AS (
            SELECT r.subscription_id, count(r.signal) AS requests, count(*) FILTER (WHERE r.signal = 'failure') AS failures,
                   max(r.hold_ms) AS hold_ms, (array_agg(r.error) FILTER (WHERE r.signal = 'failure'))[1] AS last_error
            FROM r GROUP BY r.subscription_id
        ), locked AS (
            SELECT s.* FROM trigger_events.subscriptions s
            WHERE s.id IN (SELECT subscription_id FROM a) ORDER BY s.id FOR UPDATE
        ), counted AS (
            SELECT l.id, a.hold_ms, a.last_error, a.requests, a.failures,
                   l.breaker_failure_rate IS NOT NULL AS breaker,
                   l.window_started_at IS NULL OR l.window_started_at + l.breaker_window <= now() AS fresh,
                   l.circuit, l.circuit_opens, l.enabled, l.breaker_min_requests, l.breaker_failure_rate, l.breaker_pause_after,
                   l.window_requests, l.window_failures, l.window_started_at
            FROM a JOIN locked l ON l.id = a.subscription_id
        ), windowed AS (
            SELECT c.*,
                   CASE WHEN c.fresh THEN 0 ELSE c.window_requests END + c.requests AS new_requests,
                   CASE WHEN c.fresh THEN 0 ELSE c.window_failures END + c.failures AS new_failures
            FROM counted c
        ), decided AS (
            SELECT w.*,
                   w.breaker AND CASE w.circuit
                       WHEN 'closed' THEN w.new_requests >= w.breaker_min_requests AND w.new_failures >= w.breaker_failure_rate * w.new_requests
                       WHEN 'half_open' THEN w.failures > 0
                       ELSE false END AS opens,
                   w.breaker AND w.circuit = 'half_open' AND w.failures = 0 AND w.requests > 0 AS closes
            FROM windowed w
        ), moved AS (
            SELECT d.*, d.opens AND d.enabled AND d.circuit_opens + 1 >= d.breaker_pause_after AS pauses FROM decided d
        )
        UPDATE trigger_events.subscriptions s
        SET held_until = CASE WHEN m.hold_ms > 0 THEN greatest(s.held_until, now() + m.hold_ms * interval '1 millisecond') ELSE s.held_until END,
            circuit = CASE WHEN m.opens THEN 'open' WHEN m.closes THEN 'closed' ELSE s.circuit END,
            circuit_changed_at = CASE WHEN m.opens OR m.closes THEN now() ELSE s.circuit_changed_at END,
            circuit_opens = CASE WHEN m.opens THEN s.circuit_opens + 1 WHEN m.closes THEN 0 ELSE s.circuit_opens END,
            window_started_at = CASE WHEN m.opens OR m.closes THEN NULL
                                     WHEN m.breaker AND m.circuit = 'closed' AND m.fresh THEN now() ELSE s.window_started_at END,
            window_requests = CASE WHEN m.opens OR m.closes THEN 0
                                   WHEN m.breaker AND m.circuit = 'closed' THEN m.new_requests ELSE s.window_requests END,
            window_failures = CASE WHEN m.opens OR m.closes THEN 0
                                   WHEN m.breaker AND m.circuit = 'closed' THEN m.new_failures ELSE s.window_failures END,
            enabled = s.enabled AND NOT m.pauses,
            paused_by = CASE WHEN m.pauses THEN 'breaker' ELSE s.paused_by END,
            paused_reason = CASE WHEN m.pauses
                                 THEN format('circuit breaker opened %s times in a row without a success; last: %s',
                                             s.circuit_opens + 1, coalesce(m.last_error, 'a failed attempt'))
                                 ELSE s.paused_reason END,
            paused_at = CASE WHEN m.pauses THEN now() ELSE s.paused_at END
        FROM moved m
        WHERE s.id = m.id AND (m.hold_ms > 0 OR m.breaker)
        RETURNING s.id, m.opens, s.circuit_opens, m.pauses
        """;

    /// <summary>
    /// Writes a subscription's <c>rate_limit</c> and <c>circuit_breaker</c> from its file, when they
    /// changed. A breaker switched off closes its circuit; a rate limit changed starts a full bucket.
    /// </summary>
    internal const string ConfigureSql = """
        UPDATE trigger_events.subscriptions
        SET rate_per_second = $2, breaker_failure_rate = $3, breaker_min_requests = $4, breaker_window = $5,
            breaker_open_for = $6, breaker_pause_after = $7,
            tokens = NULL, tokens_at = NULL,
            circuit = CASE WHEN $3 IS NULL THEN 'closed' ELSE circuit END,
            circuit_opens = CASE WHEN $3 IS NULL THEN 0 ELSE circuit_opens END
        WHERE id = $1
          AND (rate_per_second, breaker_failure_rate, breaker_min_requests, breaker_window, breaker_open_for, breaker_pause_after)
              IS DISTINCT FROM ($2, $3, $4, $5, $6, $7)
        """;

    /// <summary>Adds <see cref="StateSql"/> for <paramref name="subscriptionId"/> to a claim's batch.</summary>
    public static void AddState(NpgsqlBatch batch, int subscriptionId, DateTimeOffset? now)
    {
        var state = new NpgsqlBatchCommand(StateSql);
        state.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
        state.Parameters.Add(new NpgsqlParameter<DateTimeOffset?> { TypedValue = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        batch.BatchCommands.Add(state);
    }

    /// <summary>Reads <see cref="StateSql"/>'s row; null when the subscription is gone.</summary>
    public static async Task<TargetProtectionState?> ReadStateAsync(NpgsqlDataReader reader, CancellationToken cancellationToken)
    {
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        TimeSpan? waitFor = reader.IsDBNull(0) ? null : reader.GetFieldValue<TimeSpan>(0);
        return new TargetProtectionState(waitFor > TimeSpan.Zero ? waitFor : null, reader.GetBoolean(1), reader.GetString(2));
    }

    /// <summary>
    /// Adds <see cref="RecordSql"/> to a result write's batch when a result says something to its
    /// subscription's row; <paramref name="writtenBefore"/> as for the write (<see cref="DeliveryStore.RecordAsync(Guid, IReadOnlyList{DeliveryResult}, bool, CancellationToken)"/>).
    /// </summary>
    public static bool TryAddRecord(NpgsqlBatch batch, IReadOnlyList<DeliveryResult> results, bool writtenBefore)
    {
        var signalled = results.Where(r => r.Target is { } t && (t.Breaker is not null || t.Hold is not null)).ToList();
        if (signalled.Count == 0)
        {
            return false;
        }

        var command = new NpgsqlBatchCommand(RecordSql);
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. signalled.Select(r => r.Key.SubscriptionId)] });
        command.Parameters.Add(new NpgsqlParameter<string?[]>
        {
            TypedValue = [.. signalled.Select(r => r.Target!.Value.Breaker?.ToString().ToLowerInvariant())],
            NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text,
        });
        command.Parameters.Add(new NpgsqlParameter<double?[]> { TypedValue = [.. signalled.Select(r => r.Target!.Value.Hold?.TotalMilliseconds)] });
        command.Parameters.Add(new NpgsqlParameter<string?[]>
        {
            TypedValue = [.. signalled.Select(r => r.Error?.Replace("\0", "\uFFFD", StringComparison.Ordinal))],
            NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text,
        });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = [.. signalled.Select(r => r.Key.EventId)] });
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. signalled.Select(r => r.Attempt)] });
        command.Parameters.Add(new NpgsqlParameter<bool> { TypedValue = writtenBefore });
        batch.BatchCommands.Add(command);
        return true;
    }

    /// <summary>Reads <see cref="RecordSql"/>'s rows: the circuits this write opened.</summary>
    public static async Task ReadRecordAsync(NpgsqlDataReader reader, ICollection<CircuitOpened>? opened, CancellationToken cancellationToken)
    {
        while (await reader.ReadAsync(cancellationToken))
        {
            if (reader.GetBoolean(1))
            {
                opened?.Add(new CircuitOpened(reader.GetInt32(0), reader.GetInt32(2), reader.GetBoolean(3)));
            }
        }
    }

    /// <summary>Writes <paramref name="subscription"/>'s protection settings (see <see cref="ConfigureSql"/>).</summary>
    public static async Task ConfigureAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, int id, SubscriptionConfig subscription, CancellationToken cancellationToken)
    {
        var breaker = subscription.CircuitBreaker;
        await using var command = new NpgsqlCommand(ConfigureSql, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = id });
        command.Parameters.Add(new NpgsqlParameter<double?> { TypedValue = subscription.RateLimit?.PerSecond, NpgsqlDbType = NpgsqlDbType.Double });
        command.Parameters.Add(new NpgsqlParameter<double?> { TypedValue = breaker?.FailureRate, NpgsqlDbType = NpgsqlDbType.Double });
        command.Parameters.Add(new NpgsqlParameter<int?> { TypedValue = breaker?.MinRequests, NpgsqlDbType = NpgsqlDbType.Integer });
        command.Parameters.Add(new NpgsqlParameter<TimeSpan?> { TypedValue = breaker?.Window, NpgsqlDbType = NpgsqlDbType.Interval });
        command.Parameters.Add(new NpgsqlParameter<TimeSpan?> { TypedValue = breaker?.OpenFor, NpgsqlDbType = NpgsqlDbType.Interval });
        command.Parameters.Add(new NpgsqlParameter<int?> { TypedValue = breaker?.PauseAfter, NpgsqlDbType = NpgsqlDbType.Integer });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
