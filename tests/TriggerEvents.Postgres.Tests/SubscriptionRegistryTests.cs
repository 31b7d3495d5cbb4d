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

        var first = await registry.SyncAsync([Subscription("from-now"), Subscription("from-earliest", new StartFrom.Earliest())], CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders VALUES (3)");
        var second = await registry.SyncAsync([Subscription("from-now"), Subscription("from-earliest", new StartFrom.Earliest())], CancellationToken.None);
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

        var registered = await new SubscriptionRegistry(database.DataSource).SyncAsync(
            [Subscription("since-yesterday", new StartFrom.At(DateTimeOffset.UtcNow.AddDays(-1)))], CancellationToken.None);

        Assert.That(registered.Single().Backfilled, Is.EqualTo(1));
    }

    [Test]
    public async Task A_subscription_that_leaves_the_file_keeps_its_place_and_gets_what_it_missed_when_it_returns()
    {
        var registry = new SubscriptionRegistry(database.DataSource);
        await registry.SyncAsync([Subscription("stays"), Subscription("leaves")], CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await database.FanOutAsync("stays", "leaves");

        await registry.SyncAsync([Subscription("stays")], CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders VALUES (2)");
        await database.FanOutAsync("stays");

        Assert.That(await database.ScalarAsync<bool>("SELECT enabled FROM trigger_events.subscriptions WHERE name = 'leaves'"), Is.False);
        Assert.That(await DeliveriesAsync("leaves"), Is.EqualTo(1), "its pending delivery is kept; nothing new while no worker serves it");
        Assert.That(await DeliveriesAsync("stays"), Is.EqualTo(2));

        await registry.SyncAsync([Subscription("stays"), Subscription("leaves")], CancellationToken.None);
        await database.FanOutAsync("stays", "leaves");
        Assert.That(await database.ScalarAsync<bool>("SELECT enabled FROM trigger_events.subscriptions WHERE name = 'leaves'"), Is.True, "coming back re-enables it");
        Assert.That(await DeliveriesAsync("leaves"), Is.EqualTo(2), "it continues from its place: the event written while it was away is not lost");
        Assert.That(await DeliveriesAsync("stays"), Is.EqualTo(2), "and nothing is given twice");
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

        await new SubscriptionRegistry(database.DataSource).SyncAsync(
            [Subscription("now"), Subscription("earliest", new StartFrom.Earliest())], CancellationToken.None);
        await transaction.CommitAsync();
        await database.FanOutAsync();

        Assert.That(await DeliveriesAsync("now"), Is.EqualTo(1), "committed after registration: it is the new subscription's");
        Assert.That(await DeliveriesAsync("earliest"), Is.EqualTo(1), "once, though the backfill and the fan-out both could take it");
    }

    [Test]
    public async Task A_subscription_for_a_trigger_not_attached_yet_is_registered_and_reported()
    {
        var registered = await new SubscriptionRegistry(database.DataSource).SyncAsync(
            [Subscription("early") with { Trigger = "attached_later" }], CancellationToken.None);

        Assert.That(registered.Single().TriggerAttached, Is.False);
        await database.ExecuteAsync("CREATE TABLE later (id int)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('later', 'attached_later')");
        await database.ExecuteAsync("INSERT INTO later VALUES (1)");
        await database.FanOutAsync();
        Assert.That(await DeliveriesAsync("early"), Is.EqualTo(1));
    }
}
