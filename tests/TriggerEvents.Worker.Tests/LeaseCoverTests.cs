using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Worker.Delivery;
using TriggerEvents.Worker.Signals;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// A request starts only while its own delivery's lease covers it. A large event waits for room
/// in <c>body_memory</c> (and for the database, when it is away) between its claim and its
/// request; if its lease lapsed meanwhile and another worker took it over, that worker sends it,
/// and this one must not; if it is still this worker's, its lease is extended and it is sent.
/// Driven in process (<see cref="RoundHarness"/>): the test holds the whole body memory, moves
/// the clock a lease on, takes the delivery over as another worker's claim would (or not), then
/// lets the body be written.
/// </summary>
public sealed class LeaseCoverTests
{
    private const string Large = "repeat('x', 100000)";

    private RoundHarness harness = null!;

    [SetUp]
    public async Task StartAsync() => harness = await RoundHarness.CreateAsync();

    [TearDown]
    public async Task StopAsync() => await harness.DisposeAsync();

    [Test]
    public async Task A_delivery_taken_over_while_its_body_waited_is_not_sent()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook"));
        await harness.InsertAsync($"(1, {Large})");

        var letGo = await StartRoundWaitingForRoomAsync(worker, waiting: 1);
        await TakeOverAsync(eventId: 1);
        await letGo();

        Assert.That(harness.Receiver.Requests, Is.Empty, "the other worker sends it, not this one");
        Assert.That(await RowAsync(1), Is.EqualTo("in_flight 2 taken over"), "left as the other worker's claim made it");
        Assert.That(await harness.AttemptsAsync(), Is.Empty, "no attempt of this worker's: neither sent nor dead-lettered");
    }

    [Test]
    public async Task A_delivery_whose_body_waited_past_its_lease_is_sent_once_its_lease_is_extended()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook"));
        await harness.InsertAsync($"(1, {Large})");

        var letGo = await StartRoundWaitingForRoomAsync(worker, waiting: 1);
        await letGo();

        Assert.That(harness.Receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1 }), "still this worker's: sent");
        Assert.That(await RowAsync(1), Is.EqualTo("delivered 1 free"));
    }

    [Test]
    public async Task A_keys_next_event_taken_over_while_its_body_waited_is_not_sent()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook") with { Ordering = OrderingConfig.PrimaryKey });
        await harness.WriteAsync(
            "INSERT INTO orders VALUES (1, 'new')", $"UPDATE orders SET status = {Large} WHERE id = 1", "UPDATE orders SET status = 'paid' WHERE id = 1");

        // The key's run: the first event is sent, the second waits for room, the third behind it.
        var letGo = await StartRoundWaitingForRoomAsync(worker, waiting: 1);
        Assert.That(harness.Receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1 }));
        await TakeOverAsync(eventId: 2);
        await letGo();

        Assert.That(harness.Receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1 }), "never two of the key in flight");
        Assert.That(await RowAsync(2), Is.EqualTo("in_flight 2 taken over"));
        Assert.That(await RowAsync(3), Is.EqualTo("pending 0 free"), "the rest of the run given back behind it, its attempt uncounted");
    }

    [Test]
    public async Task A_batch_with_an_event_taken_over_while_its_body_waited_is_given_back_whole()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook") with { Batch = new BatchConfig(2, TimeSpan.FromSeconds(5)) });
        await harness.InsertAsync($"(1, {Large}), (2, {Large})");

        var letGo = await StartRoundWaitingForRoomAsync(worker, waiting: 1);
        await TakeOverAsync(eventId: 2);
        await letGo();

        Assert.That(harness.Receiver.Requests, Is.Empty, "a batch goes whole or not at all");
        Assert.That(await RowAsync(2), Is.EqualTo("in_flight 2 taken over"));
        Assert.That(await RowAsync(1), Is.EqualTo("pending 0 free"), "its other event, still this worker's, given back with it, its attempt uncounted");
    }

    [Test]
    public async Task Only_the_leases_an_extension_extended_are_confirmed()
    {
        await harness.WorkerAsync(harness.Subscription("hook"));
        await harness.InsertOrdersAsync(1, 2);
        // As the worker's role: the extension reads back what it extended.
        await using var asWorker = NpgsqlDataSource.Create(harness.Database.WorkerConnectionString);
        var store = new DeliveryStore(asWorker) { Clock = harness.Clock };
        var owner = Guid.NewGuid();
        var lease = TimeSpan.FromSeconds(60);
        var held = new HeldDeliveries(store, owner, lease, harness.Clock, new WakeSignal(), NullLogger.Instance);
        var claimedAt = harness.Clock.GetTimestamp();
        var subscriptionId = await harness.Database.ScalarAsync<int>("SELECT id FROM trigger_events.subscriptions WHERE name = 'hook'");
        var claimed = await store.ClaimAsync(subscriptionId, owner, 10, lease, CancellationToken.None);
        var states = claimed.OrderBy(d => d.Event.Id).Select(d => held.Hold(d, new RequestSlot(), claimedAt)).ToList();
        Assert.That(states, Has.Count.EqualTo(2));

        await TakeOverAsync(eventId: 1);
        harness.Clock.Advance(lease / 2);
        await held.ExtendLeasesAsync(CancellationToken.None);

        var timeout = lease / 2;
        Assert.That(held.LeaseCovers(states[1], timeout), Is.True, "extended just now");
        Assert.That(held.LeaseCovers(states[0], timeout), Is.False, "taken over: its lease runs from its claim, half a lease ago");
    }

    /// <summary>
    /// Holds all of the worker's body memory, starts a round, and waits until it has claimed and
    /// <paramref name="waiting"/> bodies wait for room; then moves the clock a lease on. Returns
    /// what lets the memory go and waits for the round to end.
    /// </summary>
    private async Task<Func<Task>> StartRoundWaitingForRoomAsync(DeliveryWorker worker, int waiting)
    {
        var memory = await worker.BodyMemory.ReserveAsync(worker.BodyMemory.Capacity, CancellationToken.None);
        var round = worker.RunRoundAsync(CancellationToken.None);
        for (var tries = 0; worker.BodyMemory.Waiting < waiting; tries++)
        {
            Assert.That(tries, Is.LessThan(400), "the round's large event never waited for room");
            Assert.That(round.IsCompleted, Is.False, "the round ended before its large event waited for room");
            await Task.Delay(25);
        }

        harness.Clock.Advance(WorkerConfig.DefaultLease);
        return async () =>
        {
            memory.Dispose();
            await round;
        };
    }

    /// <summary>Takes the delivery over as another worker's claim does once its lease lapsed.</summary>
    private Task TakeOverAsync(long eventId) => harness.Database.ExecuteAsync($"""
        UPDATE trigger_events.deliveries
        SET status = 'in_flight', lease_owner = gen_random_uuid(), attempts = attempts + 1, next_attempt_at = now() + interval '1 hour'
        WHERE event_id = {eventId}
        """);

    private Task<string> RowAsync(long eventId) => harness.Database.ScalarAsync<string>($"""
        SELECT concat_ws(' ', status, attempts, CASE WHEN lease_owner IS NULL THEN 'free' ELSE 'taken over' END)
        FROM trigger_events.deliveries WHERE event_id = {eventId}
        """);
}
