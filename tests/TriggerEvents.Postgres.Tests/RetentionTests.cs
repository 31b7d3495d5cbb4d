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
        Retention.RunOnceAsync(database.DataSource, TimeSpan.Zero, attempts: null, group: "default", progress: null, CancellationToken.None);

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
        var retention = await Retention.RunOnceAsync(asWorker, TimeSpan.Zero, attempts: null, group: "default", progress: null, CancellationToken.None);

        Assert.That(delete!.SqlState, Is.EqualTo(Npgsql.PostgresErrorCodes.InsufficientPrivilege));
        Assert.That(update!.SqlState, Is.EqualTo(Npgsql.PostgresErrorCodes.InsufficientPrivilege));
        Assert.That(undelivered, Is.EqualTo(1L), "only the event every subscription received");
        Assert.That(retention.Events, Is.Zero, "nothing else is deliverable-and-delivered");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log"), Is.EqualTo(2));
    }

    /// <summary>Records a group's bounds as its worker does at start, logging in as the worker role.</summary>
    private async Task RecordAsync(string group, TimeSpan? deliveredEvents, TimeSpan? attempts)
    {
        await using var asWorker = Npgsql.NpgsqlDataSource.Create(database.WorkerConnectionString);
        await GroupRetention.RecordAsync(
            asWorker, group, new Core.Configuration.RetentionConfig { DeliveredEvents = deliveredEvents, Attempts = attempts }, CancellationToken.None);
    }

    /// <summary>A run of the worker role's, as <paramref name="group"/>'s worker runs it.</summary>
    private async Task<RetentionResult> CleanupAsWorkerAsync(string group, TimeSpan? deliveredEvents, TimeSpan? attempts)
    {
        await using var asWorker = Npgsql.NpgsqlDataSource.Create(database.WorkerConnectionString);
        return await Retention.RunOnceAsync(asWorker, deliveredEvents, attempts, group, progress: null, CancellationToken.None);
    }

    /// <summary>Two teams on one database: 'served' is team-a's, 'away' is team-b's; invoices only team-a subscribes to.</summary>
    private async Task TwoTeamsWithDeliveredEventsAndAttemptsAsync()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET group_name = CASE name WHEN 'away' THEN 'team-b' ELSE 'team-a' END");
        await database.ExecuteAsync("CREATE TABLE invoices (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('invoices', 'invoices_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name, group_name) VALUES ('billed', 'invoices_changed', 'team-a')");
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");
        await database.ExecuteAsync("INSERT INTO invoices SELECT g FROM generate_series(1, 2) g");
        await database.FanOutAsync("served", "away", "billed");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered', delivered_at = now()");
        await database.ExecuteAsync("""
            INSERT INTO trigger_events.attempts (subscription_id, event_id, attempt, started_at, duration_ms, http_status)
            SELECT d.subscription_id, d.event_id, 1, now() - interval '2 days', 1, 200 FROM trigger_events.deliveries d
            """);
        // Two days old: older than every bound below but the longest.
        await database.ExecuteAsync("UPDATE trigger_events.event_log SET captured_at = now() - interval '2 days'");
    }

    private Task<string> EventsLeftAsync() =>
        database.ScalarAsync<string>("SELECT coalesce(string_agg(trigger_name, ',' ORDER BY id), '') FROM trigger_events.event_log");

    private Task<string> AttemptsLeftAsync() => database.ScalarAsync<string>("""
        SELECT coalesce(string_agg(s.name || ':' || n, ',' ORDER BY s.name), '')
        FROM (SELECT subscription_id, count(*) AS n FROM trigger_events.attempts GROUP BY subscription_id) a
        JOIN trigger_events.subscriptions s ON s.id = a.subscription_id
        """);

    [Test]
    public async Task One_groups_run_keeps_what_another_group_keeps_forever_and_deletes_what_only_it_subscribes_to()
    {
        await TwoTeamsWithDeliveredEventsAndAttemptsAsync();
        await RecordAsync("team-b", deliveredEvents: null, attempts: null);

        var result = await CleanupAsWorkerAsync("team-a", TimeSpan.Zero, TimeSpan.Zero);

        Assert.That(await EventsLeftAsync(), Is.EqualTo("orders_changed,orders_changed,orders_changed"), "team-b keeps the orders' events forever; the invoices' were team-a's alone");
        Assert.That(await AttemptsLeftAsync(), Is.EqualTo("away:3"), "team-b's attempt records are kept; team-a's went");
        Assert.That((result.Events, result.Deliveries, result.Attempts), Is.EqualTo((2L, 2L, 5L)));
    }

    [Test]
    public async Task Another_groups_bound_keeps_events_younger_than_it_and_lets_older_ones_go()
    {
        await TwoTeamsWithDeliveredEventsAndAttemptsAsync();
        await database.ExecuteAsync("UPDATE trigger_events.event_log SET captured_at = now() WHERE id = 3");
        await RecordAsync("team-b", deliveredEvents: TimeSpan.FromDays(1), attempts: TimeSpan.FromDays(3));

        await CleanupAsWorkerAsync("team-a", TimeSpan.Zero, TimeSpan.Zero);

        Assert.That(await database.ScalarAsync<string>("SELECT string_agg(id::text, ',' ORDER BY id) FROM trigger_events.event_log"), Is.EqualTo("3"),
            "events 1 and 2 are older than team-b's day; event 3 is not");
        Assert.That(await AttemptsLeftAsync(), Is.EqualTo("away:3"), "two days old, within team-b's three");
    }

    [Test]
    public async Task The_runners_own_recorded_bounds_give_way_to_the_run_and_another_groups_run_keeps_them()
    {
        await TwoTeamsWithDeliveredEventsAndAttemptsAsync();
        await RecordAsync("team-a", deliveredEvents: null, attempts: null);

        var asTeamB = await CleanupAsWorkerAsync("team-b", TimeSpan.Zero, TimeSpan.Zero);
        var eventsAfterTeamB = await EventsLeftAsync();
        var asTeamA = await CleanupAsWorkerAsync("team-a", TimeSpan.Zero, TimeSpan.Zero);

        Assert.That((asTeamB.Events, asTeamB.Attempts), Is.EqualTo((0L, 3L)),
            "team-a's recorded forever holds for team-b's run; team-b's own attempt records go");
        Assert.That(eventsAfterTeamB, Is.EqualTo("orders_changed,orders_changed,orders_changed,invoices_changed,invoices_changed"));
        Assert.That((asTeamA.Events, asTeamA.Attempts), Is.EqualTo((5L, 5L)), "team-a's own run follows its bounds");
    }

    [Test]
    public async Task Attempt_records_another_group_keeps_are_walked_past_once_and_the_ones_after_them_go()
    {
        await TwoTeamsWithDeliveredEventsAndAttemptsAsync();
        await RecordAsync("team-b", deliveredEvents: null, attempts: null);
        // More records of team-b than one batch, before team-a's in id order.
        await database.ExecuteAsync($"""
            INSERT INTO trigger_events.attempts (subscription_id, event_id, attempt, started_at, duration_ms, http_status)
            SELECT s.id, 1, g, now() - interval '2 days', 1, 500
            FROM trigger_events.subscriptions s CROSS JOIN generate_series(1, {Retention.BatchSize * 2}) g WHERE s.name = 'away'
            """);
        await database.ExecuteAsync("""
            INSERT INTO trigger_events.attempts (subscription_id, event_id, attempt, started_at, duration_ms, http_status)
            SELECT s.id, 1, 2, now() - interval '2 days', 1, 200 FROM trigger_events.subscriptions s WHERE s.name = 'served'
            """);

        var result = await CleanupAsWorkerAsync("team-a", deliveredEvents: null, TimeSpan.Zero);

        Assert.That(result.Attempts, Is.EqualTo(6L), "team-a's five first records and the one after team-b's");
        Assert.That(await AttemptsLeftAsync(), Is.EqualTo($"away:{(Retention.BatchSize * 2) + 3}"));
    }
}
