using Npgsql;
using TriggerEvents.Postgres.Migrations;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// Upgrading a database with work in progress to one-row capture (migration 000003): every
/// delivery keeps its state, and the worker of the new release sends nothing twice.
/// </summary>
public sealed class UpgradeTests
{
    private const string DeliveryState = """
        SELECT string_agg(concat_ws(':', event_id, status, attempts, lease_owner IS NOT NULL, last_error), ' ' ORDER BY event_id)
        FROM trigger_events.deliveries WHERE event_id <= 20
        """;

    [Test]
    public async Task Upgrading_to_one_row_capture_keeps_every_delivery_and_sends_nothing_twice()
    {
        // Version 2: capture fanned out in the writer's transaction.
        await using var scenario = await WorkerScenario.CreateAsync(schemaVersion: 2);
        var database = scenario.Database;
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('orders-hook', 'orders_changed')");
        await scenario.InsertOrdersAsync(1, 20);
        // 1-5 delivered, 6-8 retrying, 9-10 leased by a worker that died, 11-12 dead, 13-20 pending.
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered', attempts = 1, delivered_at = now() WHERE event_id <= 5");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET attempts = 2, next_attempt_at = now() + interval '1 second', last_error = 'HTTP 503' WHERE event_id BETWEEN 6 AND 8");
        await database.ExecuteAsync(
            "UPDATE trigger_events.deliveries SET status = 'in_flight', attempts = 1, lease_owner = gen_random_uuid(), next_attempt_at = now() + interval '2 seconds' WHERE event_id BETWEEN 9 AND 10");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'dead', attempts = 10, last_error = 'gave up' WHERE event_id BETWEEN 11 AND 12");
        var before = await database.ScalarAsync<string>(DeliveryState);

        // A writer still running the old capture while the migration starts: the migration waits
        // for it, and its event, which it fanned out itself, must not be given a second time.
        await using var writer = await database.DataSource.OpenConnectionAsync();
        await using var open = await writer.BeginTransactionAsync();
        await using (var insert = new NpgsqlCommand("INSERT INTO orders (id) VALUES (21)", writer, open))
        {
            await insert.ExecuteNonQueryAsync();
        }

        var migrating = Task.Run(() => Migrator.MigrateAsync(database.DataSource, CancellationToken.None));
        await WaitAsync(
            async () => await database.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()") > 0,
            "the migration to wait for the open writer");
        await open.CommitAsync();
        var migrated = await migrating;

        Assert.That(migrated.Applied, Is.EqualTo(Enumerable.Range(3, MigrationSource.LatestVersion - 2)));
        Assert.That(await database.ScalarAsync<string>(DeliveryState), Is.EqualTo(before), "every delivery as it was");

        // Captured by the new code: the event row only.
        await scenario.InsertOrdersAsync(22, 30);
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE event_id > 21"), Is.Zero);

        await using var worker = await scenario.StartWorkerAsync(scenario.WriteConfig(workerYaml: "batch_size: 5"));
        long[] expected = [6, 7, 8, 9, 10, .. Enumerable.Range(13, 18).Select(i => (long)i)];
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == expected.Length, TimeSpan.FromSeconds(60), $"{expected.Length} deliveries");
        await WaitAsync(
            async () => await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status IN ('pending', 'in_flight')") == 0,
            "every result to be recorded");

        var received = scenario.Receiver.Requests.Where(r => r.EventId is not null).GroupBy(r => r.EventId!.Value).ToDictionary(g => g.Key, g => g.Count());
        Assert.That(received.Keys.Order(), Is.EqualTo(expected), "the pending, retrying and stranded ones; not the delivered or the dead");
        Assert.That(received.Values, Is.All.EqualTo(1), "each sent once");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE event_id = 21"), Is.EqualTo(1));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'dead'"), Is.EqualTo(2));
        Assert.That(
            await database.ScalarAsync<int>("SELECT attempts FROM trigger_events.deliveries WHERE event_id = 6"), Is.EqualTo(3),
            "a retry continues its count");
    }

    private static async Task WaitAsync(Func<Task<bool>> condition, string what)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!await condition())
        {
            try
            {
                await Task.Delay(50, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"Waited 60 s for {what}.");
            }
        }
    }
}
