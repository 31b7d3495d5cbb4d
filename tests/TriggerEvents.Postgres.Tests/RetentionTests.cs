using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>Retention and the subscriptions' places in the log (migration 000003).</summary>
public sealed class RetentionTests
{
    private TestDatabase database = null!;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('served', 'orders_changed'), ('away', 'orders_changed')");
    }

    [TearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private Task<RetentionResult> CleanupAsync() =>
        Retention.RunOnceAsync(database.DataSource, TimeSpan.Zero, attempts: null, progress: null, CancellationToken.None);

    [Test]
    public async Task Events_a_subscription_has_not_reached_are_kept_until_its_place_passes_them_and_they_are_delivered()
    {
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");
        await database.FanOutAsync("served");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");

        var whileAway = await CleanupAsync();
        await database.FanOutAsync("away");
        var fannedOut = await CleanupAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");
        var delivered = await CleanupAsync();

        Assert.That(whileAway.Events, Is.Zero, "'away' has not been given them yet");
        Assert.That(fannedOut.Events, Is.Zero, "'away' has them, not yet delivered");
        Assert.That((delivered.Events, delivered.Deliveries), Is.EqualTo((3L, 6L)));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log"), Is.Zero);
    }

    [Test]
    public async Task An_event_of_a_transaction_still_open_at_a_subscriptions_place_is_kept()
    {
        await using var writer = await database.DataSource.OpenConnectionAsync();
        await using var open = await writer.BeginTransactionAsync();
        await using (var insert = new Npgsql.NpgsqlCommand("INSERT INTO orders VALUES (1)", writer, open))
        {
            await insert.ExecuteNonQueryAsync();
        }

        await database.FanOutAsync();
        await open.CommitAsync();

        var result = await CleanupAsync();

        Assert.That(result.Events, Is.Zero, "committed after both places: neither subscription has it yet");
        Assert.That(await database.FanOutAsync(), Is.EqualTo(2));
    }

    [Test]
    public async Task A_delivery_replayed_while_retention_waits_for_its_row_is_kept_with_its_event()
    {
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");

        // A writer that takes no gate (a DBA's UPDATE) schedules event 2 again, and holds its row
        // while retention, whose snapshot still sees it delivered, comes to delete it.
        await using var writer = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await writer.BeginTransactionAsync();
        await using (var replay = new Npgsql.NpgsqlCommand(
            "UPDATE trigger_events.deliveries SET status = 'pending', attempts = 0 WHERE event_id = 2 AND subscription_id = (SELECT id FROM trigger_events.subscriptions WHERE name = 'served')",
            writer, transaction))
        {
            await replay.ExecuteNonQueryAsync();
        }

        var cleanup = CleanupAsync();
        await WaitUntilBlockedAsync(cleanup);
        await transaction.CommitAsync();
        var result = await cleanup;

        Assert.That(result.Events, Is.EqualTo(2), "events 1 and 3");
        Assert.That(await database.ScalarAsync<string>("SELECT string_agg(id::text, ',') FROM trigger_events.event_log"), Is.EqualTo("2"));
        Assert.That(
            await database.ScalarAsync<string>("SELECT string_agg(status::text, ',' ORDER BY subscription_id) FROM trigger_events.deliveries WHERE event_id = 2"),
            Is.EqualTo("pending,delivered"), "the replayed delivery, and the other subscription's beside it");
    }

    [Test]
    public async Task A_replay_waits_for_a_retention_batch_and_never_gives_a_delivery_to_an_event_it_deleted()
    {
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");
        // Registered after the events: only a replay gives them to it.
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('late', 'orders_changed')");

        // Hold one of the rows retention deletes, so that its batch stops there, gate taken and
        // snapshot made, until the test lets it go.
        await using var holder = await database.DataSource.OpenConnectionAsync();
        await using var holding = await holder.BeginTransactionAsync();
        await using (var hold = new Npgsql.NpgsqlCommand("SELECT 1 FROM trigger_events.deliveries WHERE event_id = 3 FOR SHARE LIMIT 1", holder, holding))
        {
            await hold.ExecuteScalarAsync();
        }

        var cleanup = CleanupAsync();
        await WaitUntilBlockedAsync(cleanup);
        var replay = Replay.RunAsync(database.DataSource, "late", null, DateTimeOffset.UnixEpoch, null, null, null, CancellationToken.None);
        await WaitUntilBlockedAsync(replay, waiting: 2);
        await holding.RollbackAsync();
        var deleted = await cleanup;
        var replayed = await replay;

        Assert.That(deleted.Events, Is.EqualTo(3));
        Assert.That(replayed.Events, Is.Zero, "the replay read the log after retention's batch committed");
        Assert.That(
            await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries d WHERE NOT EXISTS (SELECT FROM trigger_events.event_log e WHERE e.id = d.event_id)"),
            Is.Zero, "deliveries without their event");
    }

    /// <summary>Waits until <paramref name="waiting"/> statements of this database wait for a lock, failing if <paramref name="task"/> ends first.</summary>
    private async Task WaitUntilBlockedAsync(Task task, int waiting = 1)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (await database.ScalarAsync<long>(
                   "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") < waiting)
        {
            Assert.That(task.IsCompleted, Is.False, "it finished without waiting: " + task.Exception?.GetBaseException().Message);
            await Task.Delay(20, deadline.Token);
        }
    }

    [Test]
    public async Task The_worker_role_runs_retention_but_can_neither_change_nor_delete_an_event_itself()
    {
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");
        await database.FanOutAsync("served", "away");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered' WHERE event_id IN (SELECT min(id) FROM trigger_events.event_log)");
        await using var asWorker = Npgsql.NpgsqlDataSource.Create(database.WorkerConnectionString);

        var delete = Assert.ThrowsAsync<Npgsql.PostgresException>(async () => await asWorker.CreateCommand("DELETE FROM trigger_events.event_log").ExecuteNonQueryAsync());
        var update = Assert.ThrowsAsync<Npgsql.PostgresException>(async () => await asWorker.CreateCommand("UPDATE trigger_events.event_log SET new_data = '{}'").ExecuteNonQueryAsync());
        var undelivered = await asWorker.CreateCommand("SELECT trigger_events.delete_delivered_events(ARRAY(SELECT id FROM trigger_events.event_log))").ExecuteScalarAsync();
        var retention = await Retention.RunOnceAsync(asWorker, TimeSpan.Zero, attempts: null, progress: null, CancellationToken.None);

        Assert.That(delete!.SqlState, Is.EqualTo(Npgsql.PostgresErrorCodes.InsufficientPrivilege));
        Assert.That(update!.SqlState, Is.EqualTo(Npgsql.PostgresErrorCodes.InsufficientPrivilege));
        Assert.That(undelivered, Is.EqualTo(1L), "only the event every subscription received");
        Assert.That(retention.Events, Is.Zero, "nothing else is deliverable-and-delivered");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log"), Is.EqualTo(2));
    }
}
