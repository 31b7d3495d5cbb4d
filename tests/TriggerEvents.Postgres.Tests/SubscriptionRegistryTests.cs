using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>Registering the YAML file's subscriptions: start_from, backfill, leaving the file, each one's place in the log.</summary>
public sealed class SubscriptionRegistryTests
{
    private TestDatabase database = null!;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
    }

    [TearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private static SubscriptionConfig Subscription(string name, StartFrom? startFrom = null) => new()
    {
        Name = name,
        Trigger = "orders_changed",
        StartFrom = startFrom ?? new StartFrom.Now(),
        Webhook = new WebhookConfig { Url = new Uri("http://127.0.0.1:9/hook") },
    };

    private Task<long> DeliveriesAsync(string subscription) => database.ScalarAsync<long>(
        "SELECT count(*) FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id WHERE s.name = $1", subscription);

    [Test]
    public async Task A_new_subscription_starts_now_unless_it_asks_to_backfill_once()
    {
        await database.ExecuteAsync("INSERT INTO orders VALUES (1), (2)");
        var registry = new SubscriptionRegistry(database.DataSource);

        var first = await registry.SyncAsync("default", [Subscription("from-now"), Subscription("from-earliest", new StartFrom.Earliest())], CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders VALUES (3)");
        var second = await registry.SyncAsync("default", [Subscription("from-now"), Subscription("from-earliest", new StartFrom.Earliest())], CancellationToken.None);
        await database.FanOutAsync();

        Assert.That(first.Select(r => (r.Config.Name, r.IsNew, r.Backfilled)), Is.EqualTo(new[] { ("from-now", true, 0L), ("from-earliest", true, 2L) }));
        Assert.That(second.Select(r => (r.IsNew, r.Backfilled)), Is.EqualTo(new[] { (false, 0L), (false, 0L) }), "a backfill happens once, on registration");
        Assert.That(await DeliveriesAsync("from-now"), Is.EqualTo(1));
        Assert.That(await DeliveriesAsync("from-earliest"), Is.EqualTo(3));
        Assert.That(first.All(r => r.TriggerAttached), Is.True);
    }

    [Test]
    public async Task A_start_time_backfills_events_captured_since_then()
    {
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await database.ExecuteAsync("UPDATE trigger_events.event_log SET captured_at = now() - interval '2 days'");
        await database.ExecuteAsync("INSERT INTO orders VALUES (2)");

        var registered = await new SubscriptionRegistry(database.DataSource).SyncAsync("default",
            [Subscription("since-yesterday", new StartFrom.At(DateTimeOffset.UtcNow.AddDays(-1)))], CancellationToken.None);

        Assert.That(registered.Single().Backfilled, Is.EqualTo(1));
    }

    [Test]
    public async Task A_subscription_that_leaves_the_file_keeps_its_place_and_gets_what_it_missed_when_it_returns()
    {
        var registry = new SubscriptionRegistry(database.DataSource);
        await registry.SyncAsync("default", [Subscription("stays"), Subscription("leaves")], CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await database.FanOutAsync("stays", "leaves");

        await registry.SyncAsync("default", [Subscription("stays")], CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders VALUES (2)");
        await database.FanOutAsync("stays");

        Assert.That(await database.ScalarAsync<bool>("SELECT enabled FROM trigger_events.subscriptions WHERE name = 'leaves'"), Is.False);
        Assert.That(await DeliveriesAsync("leaves"), Is.EqualTo(1), "its pending delivery is kept; nothing new while no worker serves it");
        Assert.That(await DeliveriesAsync("stays"), Is.EqualTo(2));

        await registry.SyncAsync("default", [Subscription("stays"), Subscription("leaves")], CancellationToken.None);
        await database.FanOutAsync("stays", "leaves");
        Assert.That(await database.ScalarAsync<bool>("SELECT enabled FROM trigger_events.subscriptions WHERE name = 'leaves'"), Is.True, "coming back re-enables it");
        Assert.That(await DeliveriesAsync("leaves"), Is.EqualTo(2), "it continues from its place: the event written while it was away is not lost");
        Assert.That(await DeliveriesAsync("stays"), Is.EqualTo(2), "and nothing is given twice");
    }

    [Test]
    public async Task A_group_pauses_only_its_own_subscriptions_and_an_operators_pause_outlasts_a_restart()
    {
        var registry = new SubscriptionRegistry(database.DataSource);
        await registry.SyncAsync("team-a", [Subscription("a-one"), Subscription("a-two")], CancellationToken.None);
        await registry.SyncAsync("team-b", [Subscription("b-one")], CancellationToken.None);
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET enabled = false, paused_by = 'operator', paused_reason = 'maintenance', paused_at = now() WHERE name = 'a-one'");

        await registry.SyncAsync("team-b", [], CancellationToken.None);
        await registry.SyncAsync("team-a", [Subscription("a-one"), Subscription("a-two")], CancellationToken.None);

        Assert.That(await database.ScalarAsync<string>(
                "SELECT string_agg(name || ':' || coalesce(paused_by, 'active'), ',' ORDER BY name) FROM trigger_events.subscriptions WHERE name IN ('a-one', 'a-two', 'b-one')"),
            Is.EqualTo("a-one:operator,a-two:active,b-one:file"), "team b's empty file paused only b-one; a restart of team a keeps the operator's pause");
    }

    [Test]
    public async Task A_name_another_group_owns_is_refused_before_anything_is_written()
    {
        var registry = new SubscriptionRegistry(database.DataSource);
        await registry.SyncAsync("owner", [Subscription("owned")], CancellationToken.None);

        var error = Assert.ThrowsAsync<ConfigException>(() => registry.SyncAsync("intruder", [Subscription("fresh"), Subscription("owned")], CancellationToken.None));

        Assert.That(error!.Message, Does.Contain("subscription 'owned' belongs to group 'owner', not to this file's group 'intruder'"));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.subscriptions WHERE name = 'fresh' OR group_name = 'intruder'"), Is.Zero);
    }

    [Test]
    public async Task A_new_subscription_gets_the_events_of_transactions_still_open_when_it_was_registered()
    {
        await using var writer = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await writer.BeginTransactionAsync();
        await using (var insert = new Npgsql.NpgsqlCommand("INSERT INTO orders VALUES (1)", writer, transaction))
        {
            await insert.ExecuteNonQueryAsync();
        }

        await new SubscriptionRegistry(database.DataSource).SyncAsync("default",
            [Subscription("now"), Subscription("earliest", new StartFrom.Earliest())], CancellationToken.None);
        await transaction.CommitAsync();
        await database.FanOutAsync();

        Assert.That(await DeliveriesAsync("now"), Is.EqualTo(1), "committed after registration: it is the new subscription's");
        Assert.That(await DeliveriesAsync("earliest"), Is.EqualTo(1), "once, though the backfill and the fan-out both could take it");
    }

    [Test]
    public async Task A_subscription_for_a_trigger_not_attached_yet_is_registered_and_reported()
    {
        var registered = await new SubscriptionRegistry(database.DataSource).SyncAsync("default",
            [Subscription("early") with { Trigger = "attached_later" }], CancellationToken.None);

        Assert.That(registered.Single().TriggerAttached, Is.False);
        await database.ExecuteAsync("CREATE TABLE later (id int)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('later', 'attached_later')");
        await database.ExecuteAsync("INSERT INTO later VALUES (1)");
        await database.FanOutAsync();
        Assert.That(await DeliveriesAsync("early"), Is.EqualTo(1));
    }
}
