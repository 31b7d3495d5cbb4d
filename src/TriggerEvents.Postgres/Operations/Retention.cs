using Npgsql;

namespace TriggerEvents.Postgres.Operations;

/// <summary>What one retention run deleted.</summary>
internal sealed record RetentionResult(long Events, long Deliveries, long Attempts, bool Skipped);

/// <summary>
/// Retention (<c>cleanup</c>, and the worker's scheduled duty): deletes events older than a bound
/// that every subscription's place in the log has passed and whose deliveries all succeeded, with those deliveries, and attempt records older than their
/// own bound (a null bound keeps that kind forever). Pending, in-flight and dead deliveries, and their events, are never deleted.
/// Nor is what another group keeps longer: an event while a group with a subscription on its
/// trigger keeps it, an attempt record while its subscription's group does, by the bounds each
/// group's worker recorded at start (<see cref="GroupRetention"/>).
/// </summary>
/// <remarks>
/// <para>
/// Deletes go in batches of <see cref="BatchSize"/>, each its own transaction, walking the log
/// in id order with a keyset so a run never rescans what it passed. Writers are never blocked:
/// capture only inserts new rows, which retention never touches. One run at a time database-wide
/// (a try-advisory lock): a second worker's duty skips instead of queueing.
/// </para>
/// <para>
/// A delivery is never left without its event. Each batch holds
/// <see cref="ScheduleGateKey"/> exclusively, and whatever gives an event already in the log a
/// delivery again (replay, a new subscription's <c>start_from</c>) holds it shared around its
/// statement, so a batch sees every such delivery committed before it and none is made while it
/// runs. The fan-out needs no gate: it gives only events no subscription's place has passed, and
/// a batch deletes only events every place has passed. A delivery changed while its batch waits
/// for its row (a writer that took no gate, a DBA's UPDATE) is read again in the batch itself, and
/// its event is kept with all of its deliveries. A foreign key would say the same for every
/// writer, but cost the fan-out a third more per delivery and every claim and result an index
/// entry (bench/README.md, "Retention"); the claim dead-letters a delivery whose event was
/// deleted by hand instead of leaving it in flight.
/// </para>
/// </remarks>
internal static class Retention
{
    public const int BatchSize = 2000;
    public const long AdvisoryLockKey = 0x7472_6967_636c_6e; // "trigcln"

    /// <summary>
    /// The transaction-level advisory lock that keeps a retention batch apart from every writer
    /// that gives events already in the log a delivery: exclusive in a batch, shared by the writers
    /// (<see cref="HoldScheduleGateSql"/>).
    /// </summary>
    public const long ScheduleGateKey = 0x7472_6967_7363_68; // "trigsch"

    /// <summary>Taken by replay and registration before they make deliveries of existing events, in the same transaction.</summary>
    public static readonly string HoldScheduleGateSql = FormattableString.Invariant($"SELECT pg_advisory_xact_lock_shared({ScheduleGateKey})");

    private static readonly string CloseScheduleGateSql = FormattableString.Invariant($"SELECT pg_advisory_xact_lock({ScheduleGateKey})");

    private const string DeleteEvents = """
        WITH candidate AS (
            SELECT e.id, e.transaction_id, e.trigger_name, e.captured_at FROM trigger_events.event_log e
            WHERE e.id > $1 AND e.captured_at < $2
            ORDER BY e.id
            LIMIT $3
        ), doomed AS (
            SELECT c.id,
                   (SELECT count(*) FROM trigger_events.subscriptions s
                    JOIN trigger_events.deliveries d ON d.subscription_id = s.id AND d.event_id = c.id) AS deliveries
            FROM candidate c
            WHERE NOT EXISTS (
                SELECT 1 FROM trigger_events.subscriptions s
                JOIN trigger_events.deliveries d ON d.subscription_id = s.id AND d.event_id = c.id
                WHERE d.status <> 'delivered')
              -- Every subscription's place has passed it: it was fanned out to all of them.
              AND NOT EXISTS (
                SELECT 1 FROM trigger_events.subscription_positions sp
                WHERE NOT pg_visible_in_snapshot(c.transaction_id, sp.position))
              -- No other group with a subscription on its trigger keeps it longer.
              AND NOT EXISTS (
                SELECT 1 FROM trigger_events.subscriptions s
                JOIN trigger_events.group_retention g ON g.group_name = s.group_name
                WHERE s.trigger_name = c.trigger_name AND g.group_name <> $5
                  AND (g.delivered_events IS NULL OR c.captured_at >= $4 - g.delivered_events))
        ), locked AS (
            -- Their deliveries as they are now, locked until the batch commits: a delivery
            -- changed since this statement's snapshot (a replay that scheduled it again) is read
            -- again once its writer commits, and one deleted meanwhile is missing.
            SELECT d.event_id, d.status
            FROM doomed JOIN trigger_events.subscriptions s ON true
            JOIN trigger_events.deliveries d ON d.subscription_id = s.id AND d.event_id = doomed.id
            FOR UPDATE OF d
        ), unchanged AS (
            -- Only events whose every delivery is still there and still delivered go, with all
            -- of their deliveries; an event with one scheduled again keeps them all.
            SELECT doomed.id
            FROM doomed LEFT JOIN (
                SELECT l.event_id, count(*) AS deliveries, count(*) FILTER (WHERE l.status = 'delivered') AS delivered
                FROM locked l GROUP BY l.event_id
            ) now ON now.event_id = doomed.id
            WHERE coalesce(now.deliveries, 0) = doomed.deliveries AND coalesce(now.delivered, 0) = doomed.deliveries
        ), deliveries_gone AS (
            DELETE FROM trigger_events.deliveries d
            USING unchanged, trigger_events.subscriptions s
            WHERE d.subscription_id = s.id AND d.event_id = unchanged.id AND d.status = 'delivered'
            RETURNING 1
        ), events_gone AS (
            -- Through a function of the schema owner's (migration 000005): the worker's role may
            -- not delete from the log, only have delivered events deleted.
            SELECT trigger_events.delete_delivered_events(ARRAY(SELECT id FROM unchanged)) AS deleted
        )
        SELECT (SELECT count(*) FROM candidate), (SELECT max(id) FROM candidate),
               (SELECT deleted FROM events_gone), (SELECT count(*) FROM deliveries_gone)
        """;

    // Walks the records in id order with a keyset, as the events' batches do: records another
    // group keeps are passed once per run, not read again by every batch.
    private const string DeleteAttempts = """
        WITH candidate AS (
            SELECT a.id, a.subscription_id, a.started_at FROM trigger_events.attempts a
            WHERE a.id > $1 AND a.started_at < $2
            ORDER BY a.id
            LIMIT $3
        ), gone AS (
            DELETE FROM trigger_events.attempts a
            USING candidate c
            WHERE a.id = c.id
              -- Unless its subscription's group, another one, keeps it longer.
              AND NOT EXISTS (
                SELECT 1 FROM trigger_events.subscriptions s
                JOIN trigger_events.group_retention g ON g.group_name = s.group_name
                WHERE s.id = c.subscription_id AND g.group_name <> $5
                  AND (g.attempts IS NULL OR c.started_at >= $4 - g.attempts))
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM candidate), (SELECT max(id) FROM candidate), (SELECT count(*) FROM gone)
        """;

    /// <summary>
    /// One run. <paramref name="group"/> is the runner's group, whose own recorded bounds give way
    /// to the run's (its file, or cleanup's flags); every other group's recorded bounds hold.
    /// </summary>
    public static async Task<RetentionResult> RunOnceAsync(
        NpgsqlDataSource dataSource, TimeSpan? deliveredEvents, TimeSpan? attempts, string group, IProgress<long>? progress,
        CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand($"SELECT pg_try_advisory_lock({AdvisoryLockKey})", connection))
        {
            if (!(bool)(await lockCommand.ExecuteScalarAsync(cancellationToken))!)
            {
                return new RetentionResult(0, 0, 0, Skipped: true);
            }
        }

        try
        {
            var now = await NowAsync(connection, cancellationToken);
            long events = 0, deliveries = 0, attemptRows = 0, after = 0;
            while (deliveredEvents is not null)
            {
                // One transaction: the gate, then the delete, whose snapshot is taken after it.
                await using var batch = new NpgsqlBatch(connection);
                batch.BatchCommands.Add(new NpgsqlBatchCommand(CloseScheduleGateSql));
                var command = new NpgsqlBatchCommand(DeleteEvents);
                command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = after });
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now - deliveredEvents.Value });
                command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = BatchSize });
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now });
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = group });
                batch.BatchCommands.Add(command);
                await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
                await reader.NextResultAsync(cancellationToken);
                await reader.ReadAsync(cancellationToken);
                var candidates = reader.GetInt64(0);
                events += reader.GetInt64(2);
                deliveries += reader.GetInt64(3);
                progress?.Report(events);
                if (candidates < BatchSize)
                {
                    break;
                }

                after = reader.GetInt64(1);
            }

            after = 0;
            while (attempts is not null)
            {
                await using var command = new NpgsqlCommand(DeleteAttempts, connection);
                command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = after });
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now - attempts.Value });
                command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = BatchSize });
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now });
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = group });
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                await reader.ReadAsync(cancellationToken);
                attemptRows += reader.GetInt64(2);
                if (reader.GetInt64(0) < BatchSize)
                {
                    break;
                }

                after = reader.GetInt64(1);
            }

            return new RetentionResult(events, deliveries, attemptRows, Skipped: false);
        }
        finally
        {
            await using var unlock = new NpgsqlCommand($"SELECT pg_advisory_unlock({AdvisoryLockKey})", connection);
            await unlock.ExecuteScalarAsync(CancellationToken.None);
        }
    }

    private static async Task<DateTimeOffset> NowAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        // The database clock, like leases: worker clocks may drift.
        await using var command = new NpgsqlCommand("SELECT now()", connection);
        return (DateTimeOffset)(await command.ExecuteScalarAsync(cancellationToken) switch
        {
            DateTime utc => new DateTimeOffset(utc, TimeSpan.Zero),
            var other => (DateTimeOffset)other!,
        });
    }
}
