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
}
