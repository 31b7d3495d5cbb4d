using Npgsql;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Postgres.Delivery;

/// <summary>A subscription as registered in the database.</summary>
internal sealed record RegisteredSubscription(int Id, SubscriptionConfig Config, bool IsNew, long Backfilled, bool TriggerAttached);

/// <summary>
/// Writes the YAML file's subscriptions into <c>trigger_events.subscriptions</c>. A new one starts
/// at its place in the log (a snapshot taken as it is inserted, migration 000003), from where the
/// worker fans events out to it. Subscriptions that left the file are disabled, never deleted:
/// their pending deliveries stay, and so does their place in the log.
/// </summary>
internal sealed class SubscriptionRegistry(NpgsqlDataSource dataSource)
{
    private const string UpsertSql = """
        INSERT INTO trigger_events.subscriptions (name, trigger_name, operations, max_attempts, max_in_flight, enabled)
        VALUES ($1, $2, $3, $4, $5, true)
        ON CONFLICT (name) DO UPDATE
        SET trigger_name = EXCLUDED.trigger_name, operations = EXCLUDED.operations,
            max_attempts = EXCLUDED.max_attempts, max_in_flight = EXCLUDED.max_in_flight, enabled = true,
            updated_at = now()
        WHERE (subscriptions.trigger_name, subscriptions.operations, subscriptions.max_attempts, subscriptions.max_in_flight, subscriptions.enabled)
              IS DISTINCT FROM (EXCLUDED.trigger_name, EXCLUDED.operations, EXCLUDED.max_attempts, EXCLUDED.max_in_flight, true)
        RETURNING id, xmax = 0 AS inserted
        """;

    // start_from earliest or a time: the deliveries of the events before the new subscription's
    // place in the log (the fan-out gives it every event after). Exactly those: an event of a
    // transaction still open at registration is after the place, and comes from the fan-out.
    private const string BackfillSql = """
        INSERT INTO trigger_events.deliveries (subscription_id, event_id)
        SELECT $1, e.id FROM trigger_events.event_log e
        WHERE e.trigger_name = $2 AND e.op = ANY ($3) AND e.captured_at >= $4
          AND pg_visible_in_snapshot(e.transaction_id,
                (SELECT sp.position FROM trigger_events.subscription_positions sp WHERE sp.subscription_id = $1))
        ON CONFLICT DO NOTHING
        """;

    public async Task<IReadOnlyList<RegisteredSubscription>> SyncAsync(
        IReadOnlyList<SubscriptionConfig> subscriptions, CancellationToken cancellationToken)
    {
        var registered = new List<RegisteredSubscription>();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        foreach (var subscription in subscriptions)
        {
            registered.Add(await RegisterAsync(connection, subscription, cancellationToken));
        }

        await using var disable = new NpgsqlCommand(
            "UPDATE trigger_events.subscriptions SET enabled = false, updated_at = now() WHERE enabled AND NOT (name = ANY ($1))", connection);
        disable.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = [.. subscriptions.Select(s => s.Name)] });
        await disable.ExecuteNonQueryAsync(cancellationToken);
        return registered;
    }

    private static async Task<RegisteredSubscription> RegisterAsync(NpgsqlConnection connection, SubscriptionConfig subscription, CancellationToken cancellationToken)
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
                // Unchanged: the upsert's WHERE skipped the write, so look the id up.
                await using var lookup = new NpgsqlCommand("SELECT id FROM trigger_events.subscriptions WHERE name = $1", connection, transaction);
                lookup.Parameters.Add(new NpgsqlParameter<string> { TypedValue = subscription.Name });
                id = (int)(await lookup.ExecuteScalarAsync(cancellationToken))!;
            }

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
