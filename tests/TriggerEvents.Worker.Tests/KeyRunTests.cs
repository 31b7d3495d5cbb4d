using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;
using TriggerEvents.Worker.Delivery;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// A key's run (<c>ordering: key</c>): the claim takes a key's waiting events together and the
/// worker sends them one request after another, driven in process (<see cref="RoundHarness"/>).
/// </summary>
public sealed class KeyRunTests
{
    private RoundHarness harness = null!;

    [SetUp]
    public async Task StartAsync() => harness = await RoundHarness.CreateAsync();

    [TearDown]
    public async Task StopAsync() => await harness.DisposeAsync();

    [Test]
    public async Task A_keys_run_goes_one_request_at_a_time_in_commit_order_and_what_follows_a_retry_waits_for_it_unsent()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook") with { Ordering = OrderingConfig.PrimaryKey });
        // Key 1: an INSERT and four UPDATEs (events 1-5); key 2: one INSERT (event 6).
        await harness.InsertAsync("(1, 'new')");
        for (var i = 1; i <= 4; i++)
        {
            await harness.Database.ExecuteAsync($"UPDATE orders SET status = 'v{i}' WHERE id = 1");
        }

        await harness.InsertAsync("(2, 'new')");
        // Requests of key 1 open at the receiver at once, at most.
        var open = 0;
        var mostOpen = 0;
        harness.Receiver.Respond = r =>
        {
            if (r.EventId != 6)
            {
                mostOpen = Math.Max(mostOpen, Interlocked.Increment(ref open));
            }

            return r.EventId == 3 && r.Attempt == 1 ? new ReceiverResponse(500) : new ReceiverResponse(200, Delay: TimeSpan.FromMilliseconds(20));
        };
        harness.Receiver.Answering = r =>
        {
            if (r.EventId != 6)
            {
                Interlocked.Decrement(ref open);
            }
        };

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(6), "both keys' runs in one claim");
        var afterFirst = await harness.DeliveriesAsync();
        Assert.That(afterFirst.Select(r => (r.EventId, r.Status, r.Attempts)), Is.EqualTo(new[]
        {
            (1L, "delivered", 1), (2L, "delivered", 1), (3L, "pending", 1), (4L, "pending", 0), (5L, "pending", 0), (6L, "delivered", 1),
        }), "event 3 is to be retried; 4 and 5 were given back unsent, their attempts uncounted");
        Assert.That(harness.Receiver.Requests.Select(r => r.EventId), Is.EquivalentTo(new long?[] { 1, 2, 3, 6 }));

        await harness.RunUntilSettledAsync(worker, 6);

        var keyOne = harness.Receiver.Requests.Where(r => r.EventId != 6).OrderBy(r => r.ReceivedAt).Select(r => r.EventId);
        Assert.That(keyOne, Is.EqualTo(new long?[] { 1, 2, 3, 3, 4, 5 }), "commit order, the retry before what follows it");
        Assert.That(mostOpen, Is.EqualTo(1), "one request of key 1 at a time");
        Assert.That((await harness.AttemptsAsync()).Count(a => a.EventId is 4 or 5), Is.EqualTo(2), "one attempt each, the given-back one not logged");
        await harness.AssertLedgerAsync(delivered: 6, dead: 0);
    }

    /// <summary>Key 1 in one transaction: an INSERT and 399 UPDATEs, events 1 to 400.</summary>
    private Task WriteBusyKeyAsync() =>
        harness.WriteAsync("BEGIN; INSERT INTO orders VALUES (1, 'new');\n"
            + string.Concat(Enumerable.Range(1, 399).Select(i => $"UPDATE orders SET status = 'v{i}' WHERE id = 1;\n")) + "COMMIT;");

    /// <summary>
    /// Runs rounds until one claims something: the fan-out makes a transaction of more events
    /// than it makes at once in chunks, a round each, and an ordered subscription takes none of
    /// them before the last. Returns what that round claimed.
    /// </summary>
    private static async Task<int> FirstClaimingRoundAsync(DeliveryWorker worker, int rounds = 5)
    {
        for (var round = 0; round < rounds; round++)
        {
            if (await worker.RunRoundAsync(CancellationToken.None) is var claimed and > 0)
            {
                return claimed;
            }
        }

        return 0;
    }

    [Test]
    public async Task A_busy_keys_run_is_taken_on_before_it_runs_out_so_one_claim_sends_the_whole_key_one_at_a_time_in_order()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook") with { Ordering = OrderingConfig.PrimaryKey });
        await WriteBusyKeyAsync();
        var open = 0;
        var mostOpen = 0;
        harness.Receiver.Respond = _ =>
        {
            mostOpen = Math.Max(mostOpen, Interlocked.Increment(ref open));
            return ReceiverResponse.Ok;
        };
        harness.Receiver.Answering = _ => Interlocked.Decrement(ref open);

        var defaults = new WorkerConfig();
        Assert.That(await FirstClaimingRoundAsync(worker), Is.EqualTo(1 + Math.Min(defaults.BatchSize, defaults.Concurrency) * KeyOrdering.FollowersPerRequest),
            "the claim's share of the key: its first and its followers for each request the claim may take");

        Assert.That(harness.Receiver.Requests.OrderBy(r => r.ReceivedAt).Select(r => r.EventId),
            Is.EqualTo(Enumerable.Range(1, 400).Select(i => (long?)i)), "the rest of the key taken on and sent in the same round, in order");
        Assert.That(mostOpen, Is.EqualTo(1), "one request of the key at a time");
        Assert.That((await harness.DeliveriesAsync()).All(r => r is { Status: "delivered", Attempts: 1 }), Is.True);
        await harness.AssertLedgerAsync(delivered: 400, dead: 0);
    }

    [Test]
    public async Task A_busy_keys_run_holds_at_most_two_take_ons_worth_however_slow_its_target()
    {
        // Batches of 10: the claim takes 31 of the key, a take-on 30 (a request's followers each).
        var settings = new WorkerConfig { BatchSize = 10 };
        var takeOn = settings.BatchSize * KeyOrdering.FollowersPerRequest;
        // A long timeout: each answer below waits for a query, which a loaded machine can keep
        // past the usual 5 s, and a timed-out request would end the run (rightly) mid-key.
        var worker = await harness.WorkerAsync(
            [harness.Subscription("hook", timeout: TimeSpan.FromSeconds(30)) with { Ordering = OrderingConfig.PrimaryKey }], settings);
        await harness.WriteAsync("BEGIN; INSERT INTO orders VALUES (1, 'new');\n"
            + string.Concat(Enumerable.Range(1, 299).Select(i => $"UPDATE orders SET status = 'v{i}' WHERE id = 1;\n")) + "COMMIT;");
        // A target slower than a take-on. At each request, what the worker holds of the key: that
        // request's delivery and those after it under its lease (answered ones may wait for their
        // results to be written together, and are not counted).
        var mostHeld = 0L;
        harness.Receiver.Respond = r =>
        {
            var held = harness.Database.ScalarAsync<long>(
                "SELECT count(*) FROM trigger_events.deliveries WHERE status = 'in_flight' AND event_id >= $1", r.EventId).GetAwaiter().GetResult();
            mostHeld = Math.Max(mostHeld, held);
            return ReceiverResponse.Ok with { Delay = TimeSpan.FromMilliseconds(2) };
        };

        Assert.That(await FirstClaimingRoundAsync(worker, rounds: 20), Is.EqualTo(1 + settings.BatchSize * KeyOrdering.FollowersPerRequest));

        Assert.That(harness.Receiver.Requests.OrderBy(r => r.ReceivedAt).Select(r => r.EventId),
            Is.EqualTo(Enumerable.Range(1, 300).Select(i => (long?)i)), "the whole key in one round, in order");
        Assert.That(mostHeld, Is.InRange(takeOn + 1, 1 + 2 * takeOn),
            "the one in flight, at most a take-on's worth unsent when the next take-on starts, and that take-on");
        await harness.AssertLedgerAsync(delivered: 300, dead: 0);
    }

    [Test]
    public async Task A_retry_in_a_run_taken_on_gives_back_what_was_taken_on_unsent()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook") with { Ordering = OrderingConfig.PrimaryKey });
        await WriteBusyKeyAsync();
        harness.Receiver.Respond = r => r.EventId == 350 && r.Attempt == 1 ? new ReceiverResponse(500) : ReceiverResponse.Ok;

        await FirstClaimingRoundAsync(worker);

        var rows = await harness.DeliveriesAsync();
        Assert.That(rows.Where(r => r.EventId < 350).All(r => r.Status == "delivered"), Is.True);
        Assert.That(rows.Single(r => r.EventId == 350), Has.Property("Status").EqualTo("pending").And.Property("Attempts").EqualTo(1), "to be retried");
        Assert.That(rows.Where(r => r.EventId > 350).Select(r => (r.Status, r.Attempts)).Distinct(), Is.EqualTo(new[] { ("pending", 0) }),
            "taken on, then given back unsent, their attempts uncounted");
        await harness.RunUntilSettledAsync(worker, 400);
        Assert.That(harness.Receiver.Requests.OrderBy(r => r.ReceivedAt).Select(r => r.EventId),
            Is.EqualTo(Enumerable.Range(1, 350).Concat(Enumerable.Range(350, 51)).Select(i => (long?)i)), "the retry before what follows it");
    }

    [Test]
    public async Task A_run_gives_the_rest_back_unsent_once_its_lease_can_no_longer_be_shown_to_cover_another_request()
    {
        // A 6 s lease and a 5 s timeout: once 1.5 s passed since the claim, the lease may expire
        // before a request started now has ended, and the next one's lease must be extended
        // first. Another session's share lock on the rest makes that extension skip them, as a
        // database out of reach would fail it.
        var worker = await harness.WorkerAsync([harness.Subscription("hook") with { Ordering = OrderingConfig.PrimaryKey }], TimeSpan.FromSeconds(6));
        await harness.WriteAsync(
            "INSERT INTO orders VALUES (1, 'new')", "UPDATE orders SET status = 'paid' WHERE id = 1", "UPDATE orders SET status = 'sent' WHERE id = 1");
        await using var locker = await harness.Database.DataSource.OpenConnectionAsync();
        await using var transaction = await locker.BeginTransactionAsync();
        harness.Receiver.Respond = r =>
        {
            if (r.EventId == 1)
            {
                harness.Clock.Advance(TimeSpan.FromSeconds(1.5));
                using var lockRest = new NpgsqlCommand("SELECT FROM trigger_events.deliveries WHERE event_id > 1 FOR KEY SHARE", locker, transaction);
                lockRest.ExecuteNonQuery();
            }

            return ReceiverResponse.Ok;
        };

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(3), "one run of three");
        await transaction.RollbackAsync();

        Assert.That(harness.Receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1 }));
        Assert.That((await harness.DeliveriesAsync()).Select(r => (r.EventId, r.Status, r.Attempts)),
            Is.EqualTo(new[] { (1L, "delivered", 1), (2L, "pending", 0), (3L, "pending", 0) }), "given back unsent, their attempts uncounted");
        await harness.RunUntilSettledAsync(worker, 3);
        Assert.That(harness.Receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1, 2, 3 }));
    }

    [Test]
    public async Task A_dead_delivery_in_a_run_lets_the_rest_of_its_key_go_on()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook") with { Ordering = OrderingConfig.PrimaryKey });
        await harness.WriteAsync(
            "INSERT INTO orders VALUES (1, 'new')", "UPDATE orders SET status = 'paid' WHERE id = 1", "UPDATE orders SET status = 'sent' WHERE id = 1");
        // 410: the target says the endpoint is gone for event 2 (dead at once); the rest are accepted.
        harness.Receiver.Respond = r => r.EventId == 2 ? new ReceiverResponse(410) : ReceiverResponse.Ok;

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(3));

        var rows = await harness.DeliveriesAsync();
        Assert.That(rows.Select(r => (r.EventId, r.Status)), Is.EqualTo(new[] { (1L, "delivered"), (2L, "dead"), (3L, "delivered") }));
        Assert.That(harness.Receiver.Requests.OrderBy(r => r.ReceivedAt).Select(r => r.EventId), Is.EqualTo(new long?[] { 1, 2, 3 }));
        await harness.AssertLedgerAsync(delivered: 2, dead: 1);
    }
}
