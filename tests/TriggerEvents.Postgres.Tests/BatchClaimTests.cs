using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The claim of a batched subscription (<c>batch</c>, migration 000009), driven directly: batches
/// of <c>max_events</c> formed at the first claim and kept for retries, a partial batch held for
/// <c>max_wait</c>, a batch as one request for <c>max_in_flight</c> and the rate limit, and with
/// ordering one event of a key per batch.
/// </summary>
public sealed class BatchClaimTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(1);
    private TestDatabase database = null!;
    private DeliveryStore store = null!;
    private int subscriptionId;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, amount int)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        subscriptionId = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight, batch_max_events, batch_max_wait) " +
            "VALUES ('hook', 'orders_changed', 1000, 3, '0') RETURNING id");
        store = new DeliveryStore(database.DataSource) { BatchedSubscriptions = new Dictionary<int, int> { [subscriptionId] = 3 } };
    }

    [TearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private static DeliveryResult Result(ClaimedDelivery claimed, DeliveryResultKind kind) =>
        new(claimed.Key, claimed.Attempt, kind, TimeSpan.Zero, kind == DeliveryResultKind.Delivered ? 200 : 500, null,
            DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(1), null);

    private Task<IReadOnlyList<ClaimedDelivery>> ClaimAsync(int requests = 100) =>
        store.ClaimAsync(subscriptionId, Guid.NewGuid(), requests, Lease, CancellationToken.None);

    private static List<List<long>> Batches(IEnumerable<ClaimedDelivery> claimed) =>
        [.. claimed.GroupBy(c => c.BatchId).OrderBy(g => g.Key).Select(g => g.Select(c => c.Event.Id).Order().ToList())];

    private async Task InsertAsync(int rows)
    {
        await database.ExecuteAsync(
            "INSERT INTO orders (id, amount) SELECT coalesce((SELECT max(id) FROM orders), 0) + g, 0 FROM generate_series(1, $1) g", rows);
        await database.FanOutAsync();
    }

    [Test]
    public async Task Due_deliveries_are_claimed_in_batches_of_max_events_named_by_their_first_event()
    {
        await InsertAsync(7);

        var claimed = await ClaimAsync();

        Assert.That(Batches(claimed), Is.EqualTo(new[] { new long[] { 1, 2, 3 }, [4, 5, 6], [7] }), "the last one is partial: max_wait is 0");
        Assert.That(claimed.Select(c => c.BatchId).Distinct().Order(), Is.EqualTo(new long?[] { 1, 4, 7 }));
        Assert.That(
            await database.ScalarAsync<string>("SELECT string_agg(batch_id::text, ',' ORDER BY event_id) FROM trigger_events.deliveries"),
            Is.EqualTo("1,1,1,4,4,4,7"), "membership is kept in the database");
    }

    [Test]
    public async Task A_batch_is_one_request_for_max_in_flight_and_the_rate_limit()
    {
        await InsertAsync(9);
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 2 WHERE id = $1", subscriptionId);

        var first = await ClaimAsync();
        var second = await ClaimAsync();

        Assert.That(Batches(first), Is.EqualTo(new[] { new long[] { 1, 2, 3 }, [4, 5, 6] }), "two requests of max_in_flight 2");
        Assert.That(second, Is.Empty, "two batches in flight fill max_in_flight");

        // One request a second: a full bucket holds one, which one batch spends.
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 100, rate_per_second = 1 WHERE id = $1", subscriptionId);
        var limited = await ClaimAsync();
        Assert.That(Batches(limited), Is.EqualTo(new[] { new long[] { 7, 8, 9 } }));
        Assert.That(await database.ScalarAsync<double>("SELECT tokens FROM trigger_events.subscriptions WHERE id = $1", subscriptionId),
            Is.LessThan(0.5), "the batch took one token");
    }

    [Test]
    public async Task A_partial_batch_waits_for_max_wait_after_its_oldest_event_became_due()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET batch_max_wait = '1 hour' WHERE id = $1", subscriptionId);
        await InsertAsync(4);

        var claimed = await ClaimAsync();
        Assert.That(Batches(claimed), Is.EqualTo(new[] { new long[] { 1, 2, 3 } }), "the full batch goes, the partial one waits");
        Assert.That(await ClaimAsync(), Is.Empty, "still waiting");

        // Its event has been due for longer than max_wait.
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '61 minutes' WHERE event_id = 4");
        Assert.That(Batches(await ClaimAsync()), Is.EqualTo(new[] { new long[] { 4 } }));
    }

    [Test]
    public async Task A_retried_batch_is_claimed_whole_and_alone_wherever_its_events_lie_in_the_queue()
    {
        await InsertAsync(3);
        var owner = Guid.NewGuid();
        var first = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        Assert.That(Batches(first), Is.EqualTo(new[] { new long[] { 1, 2, 3 } }));
        await store.RecordAsync(owner, [.. first.Select(c => Result(c, DeliveryResultKind.Retry))], false, CancellationToken.None);

        // New events due between the batch's first event and the rest: a scan of three rows finds
        // event 1 and two new ones; the batch's other events come along all the same.
        await InsertAsync(3);
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '3 seconds' WHERE event_id = 1");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '2 seconds' WHERE event_id > 3");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second' WHERE event_id IN (2, 3)");

        var retried = await ClaimAsync(requests: 1);

        Assert.That(Batches(retried), Is.EqualTo(new[] { new long[] { 1, 2, 3 } }), "the same events, one request");
        Assert.That(retried.Select(c => c.BatchId), Is.All.EqualTo(1));
        Assert.That(retried.Select(c => c.Attempt), Is.All.EqualTo(2), "one attempt each, counted once per batch");
        Assert.That(retried.Where(c => c.TakenAlong).Select(c => c.Event.Id), Is.EquivalentTo(new long[] { 2, 3 }),
            "the scan found event 1; the rest came along, and the cursor does not move past them");
        Assert.That(Batches(await ClaimAsync()), Is.EqualTo(new[] { new long[] { 4, 5, 6 } }), "the new events make a new batch");
    }

    [Test]
    public async Task A_batch_whose_results_were_written_apart_is_retried_whole_under_its_one_id()
    {
        await InsertAsync(3);
        var owner = Guid.NewGuid();
        var first = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        Assert.That(Batches(first), Is.EqualTo(new[] { new long[] { 1, 2, 3 } }));

        // The recorder wrote the request's results in two writes: each member is due at its own
        // write's time plus the delay, and a claim comes between the two due times.
        await store.RecordAsync(owner, [.. first.Take(2).Select(c => Result(c, DeliveryResultKind.Retry))], false, CancellationToken.None);
        await store.RecordAsync(owner, [.. first.Skip(2).Select(c => Result(c, DeliveryResultKind.Retry))], false, CancellationToken.None);
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second' WHERE event_id IN (1, 2)");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() + interval '1 second' WHERE event_id = 3");

        var retried = await ClaimAsync();

        Assert.That(Batches(retried), Is.EqualTo(new[] { new long[] { 1, 2, 3 } }), "one request, the same events");
        Assert.That(retried.Select(c => c.BatchId), Is.All.EqualTo(1));
        Assert.That(await ClaimAsync(), Is.Empty, "no second request of the batch's events");
    }

    [Test]
    public async Task An_expired_batch_is_taken_over_whole()
    {
        await InsertAsync(3);
        await ClaimAsync();
        // Only event 2's lease has expired so far; the rest of its batch comes with it.
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second' WHERE event_id = 2");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second' WHERE event_id <> 2");

        var taken = await ClaimAsync(requests: 1);

        Assert.That(Batches(taken), Is.EqualTo(new[] { new long[] { 1, 2, 3 } }));
        Assert.That(taken.Select(c => c.TookOverExpiredLease), Is.All.True);
    }

    [Test]
    public async Task With_ordering_a_batch_holds_the_first_pending_event_of_each_key_and_the_next_batch_follows_its_result()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET ordering_key = '{}' WHERE id = $1", subscriptionId);
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0), (2, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        await database.ExecuteAsync("UPDATE orders SET amount = 2");
        await database.FanOutAsync();
        var owner = Guid.NewGuid();

        var first = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        Assert.That(Batches(first), Is.EqualTo(new[] { new long[] { 1, 2 } }), "one event of each key");
        Assert.That(await ClaimAsync(), Is.Empty, "no key in two batches in flight");

        await store.RecordAsync(owner, [.. first.Select(c => Result(c, DeliveryResultKind.Delivered))], false, CancellationToken.None);
        var second = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        Assert.That(Batches(second), Is.EqualTo(new[] { new long[] { 3, 4 } }), "each key's next event, in commit order");
    }

    [Test]
    public async Task Once_a_subscription_is_no_longer_batched_its_deliveries_go_one_by_one_whatever_batch_they_were_in()
    {
        await InsertAsync(3);
        var owner = Guid.NewGuid();
        var first = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        await store.RecordAsync(owner, [.. first.Select(c => Result(c, DeliveryResultKind.Retry))], false, CancellationToken.None);
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET batch_max_events = NULL, batch_max_wait = NULL, max_in_flight = 2 WHERE id = $1", subscriptionId);

        var claimed = await new DeliveryStore(database.DataSource).ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);

        Assert.That(claimed.Select(c => c.Event.Id), Is.EqualTo(new long[] { 1, 2 }), "max_in_flight counts deliveries again");
        Assert.That(claimed.Select(c => c.BatchId), Is.All.Null);
    }

    [TestCase(100, null, 100)]
    [TestCase(100, 3, 300)]
    [TestCase(100, 100, 2000)]
    [TestCase(1, 1000, 1000)]
    public void A_claim_reads_a_batchs_worth_of_rows_per_request_up_to_a_bound(int requests, int? maxEvents, int rows)
    {
        Assert.That(Delivery.Batches.Rows(requests, maxEvents), Is.EqualTo(rows));
    }

    [TestCase(65536, 100, 100, 65536)]
    [TestCase(65536, 100, 2000, 3276)]
    [TestCase(65536, 1, 2000, 1024)]
    [TestCase(4096, 100, 300, 1365)]
    public void A_batched_claim_brings_no_more_values_than_an_unbatched_one(int inline, int requests, int rows, int each)
    {
        Assert.That(Delivery.Batches.InlineBytes(inline, requests, rows), Is.EqualTo(each));
    }

    [Test]
    public async Task An_unbatched_subscription_gets_no_batch()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET batch_max_events = NULL, batch_max_wait = NULL WHERE id = $1", subscriptionId);
        await InsertAsync(4);
        var plain = new DeliveryStore(database.DataSource);

        var claimed = await plain.ClaimAsync(subscriptionId, Guid.NewGuid(), 3, Lease, CancellationToken.None);

        Assert.That(claimed.Select(c => c.Event.Id), Is.EqualTo(new long[] { 1, 2, 3 }));
        Assert.That(claimed.Select(c => c.BatchId), Is.All.Null);
    }
}
