using Npgsql;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The fan-out behind a plain subscription's claim makes what the claim left room for already
/// leased (migration 000013), run as the worker's role.
/// </summary>
public sealed class FanOutLeasingTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(1);
    private TestDatabase database = null!;
    private NpgsqlDataSource asWorker = null!;
    private DeliveryStore store = null!;
    private int subscriptionId;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        asWorker = NpgsqlDataSource.Create(database.WorkerConnectionString);
        store = new DeliveryStore(asWorker);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, customer int)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        subscriptionId = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight) VALUES ('hook', 'orders_changed', 100) RETURNING id");
        // Ten made pending by a fan-out of their own, thirty not yet fanned out.
        await database.ExecuteAsync("INSERT INTO orders SELECT g, g % 3 FROM generate_series(1, 10) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("INSERT INTO orders SELECT g, g % 3 FROM generate_series(11, 40) g");
    }

    [TearDown]
    public async Task DropDatabase()
    {
        await asWorker.DisposeAsync();
        await database.DisposeAsync();
    }

    private Task<ClaimBatch> ClaimAsync(Guid owner, int limit) =>
        store.ClaimAsync(subscriptionId, owner, limit, Lease, ClaimCursor.Sweep, takeOverExpired: true,
            new FanOutRequest([subscriptionId], 400), DeliveryStore.InlineEventBytes, CancellationToken.None);

    private Task<long> CountAsync(string condition) =>
        database.ScalarAsync<long>($"SELECT count(*) FROM trigger_events.deliveries WHERE {condition}");

    [Test]
    public async Task The_claim_takes_the_pending_first_and_the_fan_out_leases_the_rest_of_its_room()
    {
        var owner = Guid.NewGuid();

        var batch = await ClaimAsync(owner, 25);

        Assert.That(batch.Deliveries.Select(d => d.Event.Id), Is.EquivalentTo(Enumerable.Range(1, 25).Select(i => (long)i)),
            "the ten pending, then the fifteen oldest not yet made");
        Assert.That(batch.FanOutLeased, Is.EqualTo(15));
        Assert.That(batch.Deliveries.Select(d => d.Attempt), Is.All.EqualTo(1));
        Assert.That(batch.Deliveries.All(d => d.ValuesIncluded && d.Event.NewRow.ToString()!.Contains("\"customer\"")), Is.True,
            "leased deliveries come with their event as claimed ones do");
        Assert.That(await CountAsync($"status = 'in_flight' AND lease_owner = '{owner}' AND attempts = 1"), Is.EqualTo(25));
        Assert.That(await CountAsync("status = 'pending' AND attempts = 0"), Is.EqualTo(15), "read with them, made pending for the next claim");
        Assert.That(batch.Next.EventId, Is.EqualTo(10), "the cursor follows the pending queue only");
    }

    [Test]
    public async Task Leased_deliveries_are_recorded_and_the_next_claim_leases_the_rest()
    {
        var owner = Guid.NewGuid();
        var first = await ClaimAsync(owner, 25);
        var recorded = await store.RecordAsync(owner, [.. first.Deliveries.Select(Delivered)], writtenBefore: false, CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders SELECT g, 0 FROM generate_series(41, 50) g");

        var second = await ClaimAsync(owner, 100);

        Assert.That(recorded, Is.EqualTo(25));
        Assert.That(second.Deliveries.Select(d => d.Event.Id), Is.EquivalentTo(Enumerable.Range(26, 25).Select(i => (long)i)),
            "the fifteen left pending, claimed first, and the ten new ones");
        Assert.That(second.FanOutLeased, Is.EqualTo(10));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.attempts"), Is.EqualTo(25), "every attempt is logged");
        Assert.That(await CountAsync("status = 'delivered'"), Is.EqualTo(25));
    }

    [Test]
    public async Task Max_in_flight_holds_for_leased_deliveries_across_owners()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 12");

        var first = await ClaimAsync(Guid.NewGuid(), 100);
        var second = await ClaimAsync(Guid.NewGuid(), 100);

        Assert.That(first.Deliveries, Has.Count.EqualTo(12));
        Assert.That(first.FanOutLeased, Is.EqualTo(2));
        Assert.That(second.Deliveries, Is.Empty);
        Assert.That(await CountAsync("status = 'in_flight'"), Is.EqualTo(12));
        Assert.That(await CountAsync("status = 'pending'"), Is.EqualTo(28), "what had no room is made pending, as before");
    }

    [Test]
    public async Task A_small_room_does_not_slow_the_fan_out_of_the_other_subscriptions_at_its_place()
    {
        // A second subscription at the same place in the log, ordered by key: one read of the log
        // serves both, and the plain one has room for two.
        var other = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, ordering_key) VALUES ('ordered', 'orders_changed', '{customer}') RETURNING id");
        await database.ExecuteAsync(
            """
            UPDATE trigger_events.subscription_positions o
            SET position = h.position, batch_end = h.batch_end, batch_after_xid = h.batch_after_xid, batch_after_id = h.batch_after_id
            FROM trigger_events.subscription_positions h WHERE o.subscription_id = $1 AND h.subscription_id = $2
            """, other, subscriptionId);
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 12 WHERE id = $1", subscriptionId);

        var batch = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, ClaimCursor.Sweep, takeOverExpired: true,
            new FanOutRequest([subscriptionId, other], 400), DeliveryStore.InlineEventBytes, CancellationToken.None);

        Assert.That(batch.FanOutLeased, Is.EqualTo(2));
        Assert.That(
            await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE subscription_id = $1", other), Is.EqualTo(30),
            "a claim's worth of the log read at least, for the ordered one too");
        Assert.That(await CountAsync($"subscription_id = {subscriptionId} AND status = 'pending'"), Is.EqualTo(28));
    }

    [Test]
    public async Task A_subscription_the_database_knows_as_ordered_is_not_leased_whatever_the_worker_thinks()
    {
        // This worker's file says plain; the subscription's row, which another worker's file
        // wrote, says ordered by key: the row decides.
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET ordering_key = '{customer}'");

        var batch = await ClaimAsync(Guid.NewGuid(), 100);

        Assert.That(batch.FanOutLeased, Is.Zero);
        Assert.That(await CountAsync("status = 'in_flight' AND event_id > 10"), Is.Zero);
        Assert.That(await CountAsync("status = 'pending' AND event_id > 10"), Is.EqualTo(30), "made pending for the next claim");
    }

    [Test]
    public async Task A_subscription_held_back_by_a_retry_after_leases_nothing()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET held_until = now() + interval '1 hour'");

        var batch = await ClaimAsync(Guid.NewGuid(), 100);

        Assert.That(batch.Deliveries, Is.Empty);
        Assert.That(await CountAsync("status = 'in_flight'"), Is.Zero);
    }

    [Test]
    public async Task Without_the_claims_room_the_fan_out_leases_nothing()
    {
        // Called on its own (no claim before it in the transaction): it makes pending rows, as
        // fan_out(int[], int) does.
        var leased = await database.ScalarAsync<long[]>(
            "SELECT leased FROM trigger_events.fan_out(ARRAY[$1], 400, $1, gen_random_uuid(), now() + interval '1 minute')", subscriptionId);

        Assert.That(leased, Is.Empty);
        Assert.That(await CountAsync("status = 'pending'"), Is.EqualTo(40));
    }

    [Test]
    public async Task Every_delivery_the_fan_out_leases_comes_back_to_the_worker_while_writers_commit()
    {
        // Writers commit all the time, so some commit between the start of the statement that
        // calls the fan-out and the fan-out's own snapshot: their events are leased, and must come
        // back with the round, or they would wait for the lease to expire.
        // Room for all that is new, so that an event committed in that window is among those leased.
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 10000");
        var owner = Guid.NewGuid();
        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, 2).Select(w => Task.Run(async () =>
        {
            for (var id = 1_000 + (w * 1_000_000); !stop.IsCancellationRequested; id++)
            {
                await database.ExecuteAsync("INSERT INTO orders VALUES ($1, 0)", id);
            }
        })).ToList();
        var returned = new HashSet<long>();
        var leasedByFanOut = 0;
        try
        {
            for (var round = 0; round < 300; round++)
            {
                var batch = await ClaimAsync(owner, 1_000);
                returned.UnionWith(batch.Deliveries.Select(d => d.Event.Id));
                leasedByFanOut += batch.FanOutLeased;
                await store.RecordAsync(owner, [.. batch.Deliveries.Select(Delivered)], writtenBefore: false, CancellationToken.None);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(writers);
        }

        var leased = await database.ScalarAsync<long[]>(
            "SELECT coalesce(array_agg(event_id), '{}') FROM trigger_events.deliveries WHERE status <> 'pending'");
        Assert.That(leasedByFanOut, Is.GreaterThan(1_000), "the rounds leased from the fan-out");
        Assert.That(leased.Except(returned), Is.Empty, "leased but never returned: left to wait for the lease to expire");
        Assert.That(await CountAsync("status = 'in_flight'"), Is.Zero, "every delivery returned was recorded");
    }

    private static DeliveryResult Delivered(ClaimedDelivery claimed) =>
        new(claimed.Key, claimed.Attempt, DeliveryResultKind.Delivered, TimeSpan.Zero, 200, null, DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(3), null);
}
