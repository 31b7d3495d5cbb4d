using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;
using TriggerEvents.Worker.Delivery;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// Waits a running worker sleeps through, crossed in process by moving the claims' clock
/// (<see cref="RoundHarness"/>): a Retry-After and its cap, an expired lease, a batch's max_wait.
/// </summary>
public sealed class DeliveryRoundTests
{
    private RoundHarness harness = null!;

    [SetUp]
    public async Task StartAsync() => harness = await RoundHarness.CreateAsync();

    [TearDown]
    public async Task StopAsync() => await harness.DisposeAsync();

    [Test]
    public async Task A_retry_waits_for_its_Retry_After_on_the_claims_clock_and_goes_once_it_passed()
    {
        harness.Receiver.Respond = r => r.Attempt == 1
            ? new ReceiverResponse(503, Headers: new Dictionary<string, string> { ["Retry-After"] = "30" })
            : ReceiverResponse.Ok;
        var worker = await harness.WorkerAsync(harness.Subscription("hook"));
        await harness.InsertAsync("(1, 'new')");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1), "the first attempt");
        Assert.That(await DeliveryAsync(), Is.EqualTo(("pending", 1, 503)));
        Assert.That(await WaitChosenAsync(), Is.EqualTo(TimeSpan.FromSeconds(30)), "the wait is the Retry-After, not the jittered backoff");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "not due yet");
        harness.Clock.Advance(TimeSpan.FromSeconds(29));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "a second before the Retry-After has passed");
        Assert.That(harness.Receiver.Requests, Has.Count.EqualTo(1));

        harness.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1), "due once the Retry-After has passed");
        Assert.That(await DeliveryAsync(), Is.EqualTo(("delivered", 2, 200)));
        Assert.That(harness.Receiver.Requests.Select(r => r.WebhookId).Distinct().Count(), Is.EqualTo(1), "the retry keeps the webhook-id");
    }

    [TestCase("seconds")]
    [TestCase("http-date")]
    public async Task A_Retry_After_longer_than_max_interval_waits_max_interval(string form)
    {
        harness.Receiver.Respond = r => r.Attempt == 1
            ? new ReceiverResponse(429, Headers: new Dictionary<string, string>
            {
                ["Retry-After"] = form == "seconds" ? "3600" : harness.Clock.GetUtcNow().AddHours(1).ToString("r", System.Globalization.CultureInfo.InvariantCulture),
            })
            : ReceiverResponse.Ok;
        var worker = await harness.WorkerAsync(harness.Subscription("hook"));
        await harness.InsertAsync("(1, 'new')");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1));
        Assert.That(await DeliveryAsync(), Is.EqualTo(("pending", 1, 429)));
        Assert.That(await WaitChosenAsync(), Is.EqualTo(TimeSpan.FromMinutes(1)), "an hour asked for, max_interval given");
        harness.Clock.Advance(TimeSpan.FromSeconds(58));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "an hour asked for: not due within max_interval (1 minute)");

        harness.Clock.Advance(TimeSpan.FromSeconds(3));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1), "due once max_interval passed");
        Assert.That(await DeliveryAsync(), Is.EqualTo(("delivered", 2, 200)));
    }

    [Test]
    public async Task A_lease_left_by_a_stopped_worker_is_taken_over_once_it_expired_on_the_claims_clock()
    {
        var config = harness.Subscription("hook");
        var worker = await harness.WorkerAsync([config], TimeSpan.FromSeconds(60));
        await harness.InsertAsync("(1, 'new')");
        // Another worker claims the delivery and is never heard from again.
        var gone = new DeliveryStore(harness.Database.DataSource) { Clock = harness.Clock };
        var subscriptionId = await harness.Database.ScalarAsync<int>("SELECT id FROM trigger_events.subscriptions WHERE name = 'hook'");
        Assert.That(await gone.ClaimAsync(subscriptionId, Guid.NewGuid(), 10, TimeSpan.FromSeconds(60), CancellationToken.None), Has.Count.EqualTo(1));

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "the lease holds");
        harness.Clock.Advance(TimeSpan.FromSeconds(59));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "the lease holds for its full length");

        harness.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1), "taken over once expired");
        Assert.That(await DeliveryAsync(), Is.EqualTo(("delivered", 2, 200)), "the lost attempt counts");
        Assert.That(harness.Receiver.Requests, Has.Count.EqualTo(1));
    }

    [Test]
    public async Task A_keyed_delivery_the_claim_dead_letters_hands_its_key_on_without_waiting_for_a_sweep()
    {
        // Rate limited: a key's deliveries go one per claim, never as a run that would take event 2
        // along behind the dead one.
        var config = harness.Subscription("hook", maxAttempts: 1) with { Ordering = OrderingConfig.PrimaryKey, RateLimit = new RateLimit(1000) };
        var worker = await harness.WorkerAsync([config], TimeSpan.FromSeconds(60));
        await harness.InsertAsync("(1, 'new')");
        // Another worker fans out and claims event 1 (its one attempt), and is never heard from again.
        var subscriptionId = await harness.Database.ScalarAsync<int>("SELECT id FROM trigger_events.subscriptions WHERE name = 'hook'");
        var gone = new DeliveryStore(harness.Database.DataSource) { Clock = harness.Clock, OrderedSubscriptions = new HashSet<int> { subscriptionId } };
        var taken = await gone.ClaimAsync(subscriptionId, Guid.NewGuid(), 10, TimeSpan.FromSeconds(60), ClaimCursor.Sweep, takeOverExpired: true,
            new FanOutRequest([subscriptionId], 100), DeliveryStore.InlineEventBytes, CancellationToken.None);
        Assert.That(taken.Deliveries, Has.Count.EqualTo(1));
        await harness.WriteAsync("UPDATE orders SET status = 'paid' WHERE id = 1");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "event 1 is in flight; event 2 waits behind it");
        Assert.That(await harness.Database.ScalarAsync<bool>("SELECT next_attempt_at = 'infinity' FROM trigger_events.deliveries WHERE event_id = 2"),
            Is.True, "parked");
        // Past the lease: this round's claim finds event 1's attempts spent and dead-letters it.
        // (The round's sweep of parked deliveries runs before its claim, while event 1 is still in
        // flight; the next sweep is ten poll intervals away.)
        harness.Clock.Advance(TimeSpan.FromSeconds(61));
        await worker.RunRoundAsync(CancellationToken.None);
        harness.Clock.Advance(TimeSpan.FromSeconds(1));
        await worker.RunRoundAsync(CancellationToken.None);

        Assert.That(await harness.Database.ScalarAsync<string>(
            "SELECT string_agg(event_id || ':' || status, ' ' ORDER BY event_id) FROM trigger_events.deliveries"), Is.EqualTo("1:dead 2:delivered"));
        Assert.That(harness.Receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long[] { 2 }), "event 2 handed on and sent");
    }

    [Test]
    public async Task A_partial_batch_waits_for_max_wait_on_the_claims_clock_then_goes_as_one_request()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook") with { Batch = new BatchConfig(10, TimeSpan.FromSeconds(5)) });
        await harness.InsertAsync("(1, 'new'), (2, 'new'), (3, 'new')");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "three of ten: the batch waits to fill");
        Assert.That((await PageAsync()).Select(r => r.WebhookId.For(r.EventId, "hook")), Is.All.Null, "no batch, so no webhook-id, before the first claim");
        harness.Clock.Advance(TimeSpan.FromSeconds(4));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "within max_wait");

        harness.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(3), "past max_wait: sent as it is");
        var request = harness.Receiver.Requests.Single();
        var first = await FirstEventIdAsync();
        Assert.That(request.WebhookId, Is.EqualTo(WebhookId.ForBatch(first, 3, "hook")));
        Assert.That(await harness.Database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered'"), Is.EqualTo(3));

        // The console names the request each event went in, not an id of its own no request carried.
        Assert.That((await PageAsync()).Select(r => r.WebhookId.For(r.EventId, "hook")), Is.All.EqualTo(request.WebhookId));
        var attempts = await ConsoleQueries.EventAttemptsAsync(harness.Database.DataSource, first + 2, CancellationToken.None);
        Assert.That(attempts.Select(a => (a.Attempt, a.BatchWebhookId)), Is.EqualTo(new[] { (1, request.WebhookId) }));
        var deliveries = await ConsoleQueries.EventDeliveriesAsync(harness.Database.DataSource, first + 1, CancellationToken.None);
        Assert.That(deliveries.Single().WebhookId.For(first + 1, "hook"), Is.EqualTo(request.WebhookId));
    }

    [Test]
    public async Task A_410_is_dead_after_one_attempt_and_a_connection_error_is_retried()
    {
        harness.Receiver.Respond = _ => new ReceiverResponse(410);
        using var closed = new ClosedPort();
        var worker = await harness.WorkerAsync(harness.Subscription("gone"), harness.Subscription("unreachable", closed.Url()));
        await harness.InsertAsync("(1, 'new')");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(2));

        var rows = (await harness.Database.ScalarAsync<string>(
            "SELECT string_agg(s.name || ' ' || d.status || ' ' || d.attempts || ' ' || coalesce(d.last_error, ''), '|' ORDER BY s.name) FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id")).Split('|');
        Assert.That(rows[0], Does.StartWith("gone dead 1 HTTP 410: the target says the endpoint is gone"));
        Assert.That(rows[1], Does.StartWith("unreachable pending 1 connection error: "));
    }

    private async Task<(string Status, int Attempts, int? LastStatus)> DeliveryAsync()
    {
        Assert.That(await harness.Database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries"), Is.EqualTo(1));
        var row = (await harness.Database.ScalarAsync<string>("SELECT status || ' ' || attempts || ' ' || coalesce(last_status::text, '') FROM trigger_events.deliveries")).Split(' ');
        return (row[0], int.Parse(row[1], System.Globalization.CultureInfo.InvariantCulture),
            row[2].Length == 0 ? null : int.Parse(row[2], System.Globalization.CultureInfo.InvariantCulture));
    }

    private async Task<IReadOnlyList<Postgres.Operations.DeliveryRow>> PageAsync() =>
        (await ConsoleQueries.DeliveriesAsync(harness.Database.DataSource, new DeliveryPage("hook", Status: null), CancellationToken.None))!;

    /// <summary>The wait the result write chose: both times are its one <c>now()</c>, so it is exact.</summary>
    private Task<TimeSpan> WaitChosenAsync() =>
        harness.Database.ScalarAsync<TimeSpan>("SELECT next_attempt_at - updated_at FROM trigger_events.deliveries");

    private Task<long> FirstEventIdAsync() => harness.Database.ScalarAsync<long>("SELECT min(id) FROM trigger_events.event_log");
}
