using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The overview's delivery and failure rates: counted by the minute as results are written, over
/// the window's minutes and the time they cover, and pruned after an hour.
/// </summary>
public sealed class ConsoleRatesTests
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(5);

    [Test]
    public async Task The_window_s_minutes_of_every_worker_are_summed_and_older_ones_left_out()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("""
            INSERT INTO trigger_events.subscriptions (id, name, trigger_name) OVERRIDING SYSTEM VALUE VALUES (1, 'hook', 't'), (2, 'audit', 't');
            INSERT INTO trigger_events.attempt_counts (subscription_id, minute, worker, attempts, failures) VALUES
                (1, date_trunc('minute', now()), gen_random_uuid(), 40, 1),
                (1, date_trunc('minute', now()), gen_random_uuid(), 20, 0),
                (1, date_trunc('minute', now() - interval '4 minutes'), gen_random_uuid(), 30, 2),
                (1, date_trunc('minute', now() - interval '10 minutes'), gen_random_uuid(), 1000, 1000),
                (2, date_trunc('minute', now() - interval '2 minutes'), gen_random_uuid(), 6, 6);
            """);

        var rates = (await ConsoleQueries.RatesAsync(database.DataSource, Window, CancellationToken.None)).ToDictionary(r => r.Subscription);

        Assert.That((rates["hook"].Attempts, rates["hook"].Failures), Is.EqualTo((90L, 3L)));
        Assert.That((rates["audit"].Attempts, rates["audit"].Failures), Is.EqualTo((6L, 6L)));
        Assert.That(rates["hook"].Covered, Is.GreaterThanOrEqualTo(Window).And.LessThan(Window + TimeSpan.FromMinutes(1)), "from the start of the window's first minute");
        Assert.That(rates["hook"].PerMinute(90), Is.InRange(90 / 6.0, 90 / 5.0));
        Assert.That(rates["audit"].FailureRate, Is.EqualTo(1.0));
    }

    [Test]
    public async Task Each_result_write_adds_its_attempts_and_failures_to_its_minute()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        var subscription = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight) VALUES ('hook', 'orders_changed', 100) RETURNING id");
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 6) g");
        await database.FanOutAsync();
        await using var asWorker = Npgsql.NpgsqlDataSource.Create(database.WorkerConnectionString);
        var store = new DeliveryStore(asWorker);
        var owner = Guid.NewGuid();
        var claimed = await store.ClaimAsync(subscription, owner, 6, TimeSpan.FromMinutes(1), CancellationToken.None);

        DeliveryResult Result(ClaimedDelivery c, int? status) => new(
            c.Key, c.Attempt, status is 200 ? DeliveryResultKind.Delivered : DeliveryResultKind.Retry, TimeSpan.FromSeconds(10), status,
            status is 200 ? null : "failed", DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(2), null);
        await store.RecordAsync(owner, [Result(claimed[0], 200), Result(claimed[1], 200), Result(claimed[2], 500)], false, CancellationToken.None);
        await store.RecordAsync(owner, [Result(claimed[3], 200), Result(claimed[4], null), Result(claimed[5], 200)], false, CancellationToken.None);

        var rate = (await ConsoleQueries.RatesAsync(asWorker, Window, CancellationToken.None)).Single();
        Assert.That((rate.Subscription, rate.Attempts, rate.Failures), Is.EqualTo(("hook", 6L, 2L)), "a timeout (no status) is a failure");
        Assert.That(
            await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.attempt_counts"), Is.LessThanOrEqualTo(2),
            "one row a minute for the subscription and worker, added to");
    }

    [Test]
    public async Task Counts_older_than_an_hour_are_pruned()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("""
            INSERT INTO trigger_events.attempt_counts (subscription_id, minute, worker, attempts, failures)
            SELECT 1, date_trunc('minute', now()) - m * interval '1 minute', gen_random_uuid(), 1, 0 FROM generate_series(0, 90) m;
            """);

        // As the worker's role, which prunes them.
        await using var asWorker = Npgsql.NpgsqlDataSource.Create(database.WorkerConnectionString);
        var pruned = await AttemptCounts.PruneAsync(asWorker, CancellationToken.None);

        Assert.That(await database.ScalarAsync<DateTime>("SELECT min(minute) FROM trigger_events.attempt_counts"), Is.GreaterThanOrEqualTo(DateTime.UtcNow - AttemptCounts.Kept - TimeSpan.FromMinutes(1)));
        Assert.That(pruned, Is.InRange(29, 31));
    }
}
