using Npgsql;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Postgres.Delivery;

/// <summary>A subscription as registered in the database.</summary>
internal sealed record RegisteredSubscription(int Id, SubscriptionConfig Config, bool IsNew, long Backfilled, bool TriggerAttached);

/// <summary>
/// Writes the YAML file's subscriptions into <c>trigger_events.subscriptions</c>, as its group's
/// (<c>worker.group</c>). A new one starts at its place in the log (a snapshot taken as it is
/// inserted, migration 000003), from where the worker fans events out to it. A subscription of
/// the group that left the file is paused, never deleted: its deliveries stay, and so does its
/// place in the log; when it returns it is active again and continues from there. One paused by
/// an operator or its circuit breaker stays paused until resumed. A name another group owns is
/// refused before anything is written (migration 000005).
/// </summary>
internal sealed class SubscriptionRegistry(NpgsqlDataSource dataSource)
{
    private const string UpsertSql = """
        INSERT INTO trigger_events.subscriptions (name, group_name, trigger_name, operations, max_attempts, max_in_flight, enabled, ordering_key)
        VALUES ($1, $6, $2, $3, $4, $5, true, $7)
        ON CONFLICT (name) DO UPDATE
        SET trigger_name = EXCLUDED.trigger_name, operations = EXCLUDED.operations,
            max_attempts = EXCLUDED.max_attempts, max_in_flight = EXCLUDED.max_in_flight,
            ordering_key = EXCLUDED.ordering_key,
            enabled = subscriptions.enabled OR subscriptions.paused_by = 'file',
            paused_by = nullif(subscriptions.paused_by, 'file'),
            paused_reason = CASE WHEN subscriptions.paused_by = 'file' THEN NULL ELSE subscriptions.paused_reason END,
            paused_at = CASE WHEN subscriptions.paused_by = 'file' THEN NULL ELSE subscriptions.paused_at END,
            updated_at = now()
        WHERE subscriptions.group_name = EXCLUDED.group_name
          AND ((subscriptions.trigger_name, subscriptions.operations, subscriptions.max_attempts, subscriptions.max_in_flight, subscriptions.ordering_key)
                   IS DISTINCT FROM (EXCLUDED.trigger_name, EXCLUDED.operations, EXCLUDED.max_attempts, EXCLUDED.max_in_flight, EXCLUDED.ordering_key)
               OR subscriptions.paused_by = 'file')
        RETURNING id, xmax = 0 AS inserted
        """;

    private const string PauseLeftSql = """
        UPDATE trigger_events.subscriptions
        SET enabled = false, paused_by = 'file', paused_reason = 'not in the file of group ' || $1, paused_at = now(), updated_at = now()
        WHERE group_name = $1 AND enabled AND NOT (name = ANY ($2))
        """;

    // start_from earliest or a time: the deliveries of the events before the new subscription's
    // place in the log (the fan-out gives it every event after). Exactly those: an event of a
    // transaction still open at registration is after the place, and comes from the fan-out.
    // READ events a backfill wrote for another subscription are that one's only.
    private const string BackfillSql = """
        INSERT INTO trigger_events.deliveries (subscription_id, event_id, order_key, order_seq)
        SELECT $1, k.id, k.key, CASE WHEN k.key IS NOT NULL THEN nextval('trigger_events.delivery_order') END
        FROM (SELECT e.id, trigger_events.delivery_order_key($1, e.id) AS key FROM trigger_events.event_log e
        WHERE e.trigger_name = $2 AND e.op = ANY ($3) AND e.captured_at >= $4
          AND (e.subscription_name IS NULL OR e.subscription_name = $5)
          AND pg_visible_in_snapshot(e.transaction_id,
                (SELECT sp.position FROM trigger_events.subscription_positions sp WHERE sp.subscription_id = $1))
              ORDER BY e.id) k
        -- Numbered in log order (a volatile output is evaluated after the sort), for ordered subscriptions.
        ORDER BY k.id
        ON CONFLICT DO NOTHING
        """;

    public async Task<IReadOnlyList<RegisteredSubscription>> SyncAsync(
        string group, IReadOnlyList<SubscriptionConfig> subscriptions, CancellationToken cancellationToken)
    {
        var registered = new List<RegisteredSubscription>();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await RefuseOtherGroupsAsync(connection, group, subscriptions, cancellationToken);
        var orderingErrors = new List<ConfigError>();
        foreach (var subscription in subscriptions)
        {
            if (await OrderingKeyCheck.CheckAsync(connection, subscription, cancellationToken) is { } error)
            {
                orderingErrors.Add(error);
            }
        }

        if (orderingErrors.Count > 0)
        {
            throw new ConfigException(orderingErrors);
        }

        foreach (var subscription in subscriptions)
        {
            registered.Add(await RegisterAsync(connection, group, subscription, cancellationToken));
        }

        await using var pause = new NpgsqlCommand(PauseLeftSql, connection);
        pause.Parameters.Add(new NpgsqlParameter<string> { TypedValue = group });
        pause.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = [.. subscriptions.Select(s => s.Name)] });
        await pause.ExecuteNonQueryAsync(cancellationToken);
        return registered;
    }

    /// <summary>Every name of the file that another group owns, as configuration errors at the name's place.</summary>
    private static async Task RefuseOtherGroupsAsync(
        NpgsqlConnection connection, string group, IReadOnlyList<SubscriptionConfig> subscriptions, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            "SELECT name, group_name FROM trigger_events.subscriptions WHERE name = ANY ($1) AND group_name <> $2", connection);
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = [.. subscriptions.Select(s => s.Name)] });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = group });
        var owned = new Dictionary<string, string>(StringComparer.Ordinal);
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                owned[reader.GetString(0)] = reader.GetString(1);
            }
        }

        if (owned.Count > 0)
        {
            throw OwnedByAnotherGroup(group, subscriptions.Where(s => owned.ContainsKey(s.Name)).Select(s => (s, owned[s.Name])));
        }
    }

    private static ConfigException OwnedByAnotherGroup(string group, IEnumerable<(SubscriptionConfig Subscription, string Owner)> names) =>
        new([.. names.Select(n => (n.Subscription.Location ?? new ConfigLocation("configuration", 0, 0)).Error(
            $"subscription '{n.Subscription.Name}' belongs to group '{n.Owner}', not to this file's group '{group}': " +
            $"rename it here, set worker.group: {n.Owner}, or delete it with 'triggerevents subscriptions delete {n.Subscription.Name}'"))]);

    private static async Task<RegisteredSubscription> RegisterAsync(
        NpgsqlConnection connection, string group, SubscriptionConfig subscription, CancellationToken cancellationToken)
    {
        var operations = subscription.Operations.ToArray();
        int id;
        bool inserted;
        long backfilled = 0;
        await using (var transaction = await connection.BeginTransactionAsync(cancellationToken))
        {
            await using (var upsert = new NpgsqlCommand(UpsertSql, connection, transaction))
            {
                upsert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = subscription.Name });
                upsert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = subscription.Trigger });
                upsert.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = operations });
                upsert.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscription.Retry.MaxAttempts });
                upsert.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscription.MaxInFlight });
                upsert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = group });
                upsert.Parameters.Add(new NpgsqlParameter<string[]?> { TypedValue = subscription.Ordering?.KeyColumns.ToArray(), NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text });
                await using var reader = await upsert.ExecuteReaderAsync(cancellationToken);
                if (await reader.ReadAsync(cancellationToken))
                {
                    id = reader.GetInt32(0);
                    inserted = reader.GetBoolean(1);
                }
                else
                {
                    id = -1;
                    inserted = false;
                }
            }

            if (id < 0)
            {
                // Unchanged, or (when another group registered the name since the check) owned by
                // another group: the upsert's WHERE skipped the write, so look it up.
                await using var lookup = new NpgsqlCommand("SELECT id, group_name FROM trigger_events.subscriptions WHERE name = $1", connection, transaction);
                lookup.Parameters.Add(new NpgsqlParameter<string> { TypedValue = subscription.Name });
                await using var reader = await lookup.ExecuteReaderAsync(cancellationToken);
                await reader.ReadAsync(cancellationToken);
                id = reader.GetInt32(0);
                if (reader.GetString(1) != group)
                {
                    throw OwnedByAnotherGroup(group, [(subscription, reader.GetString(1))]);
                }
            }

            // rate_limit and circuit_breaker (migration 000007), written only when they changed.
            await TargetProtectionQueries.ConfigureAsync(connection, transaction, id, subscription, cancellationToken);
            // batch (migration 000009), likewise.
            await Batches.ConfigureAsync(connection, transaction, id, subscription, cancellationToken);

            if (inserted && SinceOf(subscription.StartFrom) is { } since)
            {
                // Retention deletes no event while this transaction gives old events deliveries.
                await using (var gate = new NpgsqlCommand(Operations.Retention.HoldScheduleGateSql, connection, transaction))
                {
                    await gate.ExecuteNonQueryAsync(cancellationToken);
                }

                await using var backfill = new NpgsqlCommand(BackfillSql, connection, transaction);
                backfill.Parameters.Add(new NpgsqlParameter<int> { TypedValue = id });
                backfill.Parameters.Add(new NpgsqlParameter<string> { TypedValue = subscription.Trigger });
                backfill.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = operations });
                backfill.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = since });
                backfill.Parameters.Add(new NpgsqlParameter<string> { TypedValue = subscription.Name });
                backfilled = await backfill.ExecuteNonQueryAsync(cancellationToken);
            }

            await transaction.CommitAsync(cancellationToken);
        }

        await using var attached = new NpgsqlCommand("SELECT EXISTS (SELECT 1 FROM trigger_events.event_triggers WHERE name = $1)", connection);
        attached.Parameters.Add(new NpgsqlParameter<string> { TypedValue = subscription.Trigger });
        var triggerAttached = (bool)(await attached.ExecuteScalarAsync(cancellationToken))!;
        return new RegisteredSubscription(id, subscription, inserted, backfilled, triggerAttached);
    }

    private static DateTimeOffset? SinceOf(StartFrom startFrom) => startFrom switch
    {
        StartFrom.Earliest => DateTimeOffset.MinValue.AddYears(1),
        StartFrom.At at => at.Time,
        _ => null,
    };
}
