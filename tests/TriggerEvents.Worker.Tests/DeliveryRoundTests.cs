using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Prometheus;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;
using TriggerEvents.Worker.Delivery;
using TriggerEvents.Worker.Delivery.Targets;
using TriggerEvents.Worker.Signals;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// The delivery path in process, one round at a time (<see cref="DeliveryWorker.RunRoundAsync"/>),
/// on a clock the test moves: waits that a running worker would sleep through (a Retry-After, a
/// lease, a batch's max_wait) are crossed by moving the clock, not by waiting. The database and
/// the receiver are real; behaviour that is about processes (signals, crashes) is tested with
/// the executable elsewhere.
/// </summary>
public sealed class DeliveryRoundTests
{
    private TestDatabase database = null!;
    private WebhookReceiver receiver = null!;
    private FakeTimeProvider clock = null!;
    private readonly List<IDeliveryTarget> targets = [];

    [SetUp]
    public async Task StartAsync()
    {
        database = await TestDatabase.CreateAsync();
        receiver = await WebhookReceiver.StartAsync();
        clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, status text)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
    }

    [TearDown]
    public async Task StopAsync()
    {
        foreach (var target in targets)
        {
            target.Dispose();
        }

        await receiver.DisposeAsync();
        await database.DisposeAsync();
    }

    [Test]
    public async Task A_retry_waits_for_its_Retry_After_on_the_claims_clock_and_goes_once_it_passed()
    {
        receiver.Respond = r => r.Attempt == 1
            ? new ReceiverResponse(503, Headers: new Dictionary<string, string> { ["Retry-After"] = "30" })
            : ReceiverResponse.Ok;
        var worker = await WorkerAsync(Subscription("hook"));
        await InsertAsync("(1, 'new')");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1), "the first attempt");
        Assert.That(await DeliveryAsync(), Is.EqualTo(("pending", 1, 503)));

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "not due yet");
        clock.Advance(TimeSpan.FromSeconds(29));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "a second before the Retry-After has passed");
        Assert.That(receiver.Requests, Has.Count.EqualTo(1));

        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1), "due once the Retry-After has passed");
        Assert.That(await DeliveryAsync(), Is.EqualTo(("delivered", 2, 200)));
        Assert.That(receiver.Requests.Select(r => r.WebhookId).Distinct().Count(), Is.EqualTo(1), "the retry keeps the webhook-id");
    }

    [TestCase("seconds")]
    [TestCase("http-date")]
    public async Task A_Retry_After_longer_than_max_interval_waits_max_interval(string form)
    {
        receiver.Respond = r => r.Attempt == 1
            ? new ReceiverResponse(429, Headers: new Dictionary<string, string>
            {
                ["Retry-After"] = form == "seconds" ? "3600" : clock.GetUtcNow().AddHours(1).ToString("r", System.Globalization.CultureInfo.InvariantCulture),
            })
            : ReceiverResponse.Ok;
        var worker = await WorkerAsync(Subscription("hook"));
        await InsertAsync("(1, 'new')");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1));
        Assert.That(await DeliveryAsync(), Is.EqualTo(("pending", 1, 429)));
        clock.Advance(TimeSpan.FromSeconds(58));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "an hour asked for: not due within max_interval (1 minute)");

        clock.Advance(TimeSpan.FromSeconds(3));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1), "due once max_interval passed");
        Assert.That(await DeliveryAsync(), Is.EqualTo(("delivered", 2, 200)));
    }

    [Test]
    public async Task A_lease_left_by_a_stopped_worker_is_taken_over_once_it_expired_on_the_claims_clock()
    {
        var config = Subscription("hook");
        var worker = await WorkerAsync(config, lease: TimeSpan.FromSeconds(60));
        await InsertAsync("(1, 'new')");
        // Another worker claims the delivery and is never heard from again.
        var gone = new DeliveryStore(database.DataSource) { Clock = clock };
        var subscriptionId = await database.ScalarAsync<int>("SELECT id FROM trigger_events.subscriptions WHERE name = 'hook'");
        Assert.That(await gone.ClaimAsync(subscriptionId, Guid.NewGuid(), 10, TimeSpan.FromSeconds(60), CancellationToken.None), Has.Count.EqualTo(1));

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "the lease holds");
        clock.Advance(TimeSpan.FromSeconds(59));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "the lease holds for its full length");

        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(1), "taken over once expired");
        Assert.That(await DeliveryAsync(), Is.EqualTo(("delivered", 2, 200)), "the lost attempt counts");
        Assert.That(receiver.Requests, Has.Count.EqualTo(1));
    }

    [Test]
    public async Task A_partial_batch_waits_for_max_wait_on_the_claims_clock_then_goes_as_one_request()
    {
        var worker = await WorkerAsync(Subscription("hook") with { Batch = new BatchConfig(10, TimeSpan.FromSeconds(5)) });
        await InsertAsync("(1, 'new'), (2, 'new'), (3, 'new')");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "three of ten: the batch waits to fill");
        Assert.That((await PageAsync()).Select(r => r.WebhookId.For(r.EventId, "hook")), Is.All.Null, "no batch, so no webhook-id, before the first claim");
        clock.Advance(TimeSpan.FromSeconds(4));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.Zero, "within max_wait");

        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(3), "past max_wait: sent as it is");
        var request = receiver.Requests.Single();
        var first = await FirstEventIdAsync();
        Assert.That(request.WebhookId, Is.EqualTo(WebhookId.ForBatch(first, 3, "hook")));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered'"), Is.EqualTo(3));

        // The console names the request each event went in, not an id of its own no request carried.
        Assert.That((await PageAsync()).Select(r => r.WebhookId.For(r.EventId, "hook")), Is.All.EqualTo(request.WebhookId));
        var attempts = await ConsoleQueries.EventAttemptsAsync(database.DataSource, first + 2, CancellationToken.None);
        Assert.That(attempts.Select(a => (a.Attempt, a.BatchWebhookId)), Is.EqualTo(new[] { (1, request.WebhookId) }));
        var deliveries = await ConsoleQueries.EventDeliveriesAsync(database.DataSource, first + 1, CancellationToken.None);
        Assert.That(deliveries.Single().WebhookId.For(first + 1, "hook"), Is.EqualTo(request.WebhookId));
    }

    [Test]
    public async Task A_410_is_dead_after_one_attempt_and_a_connection_error_is_retried()
    {
        receiver.Respond = _ => new ReceiverResponse(410);
        using var closed = new ClosedPort();
        var worker = await WorkerAsync(Subscription("gone"), Subscription("unreachable", closed.Url()));
        await InsertAsync("(1, 'new')");

        Assert.That(await worker.RunRoundAsync(CancellationToken.None), Is.EqualTo(2));

        var rows = (await database.ScalarAsync<string>(
            "SELECT string_agg(s.name || ' ' || d.status || ' ' || d.attempts || ' ' || coalesce(d.last_error, ''), '|' ORDER BY s.name) FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id")).Split('|');
        Assert.That(rows[0], Does.StartWith("gone dead 1 HTTP 410: the target says the endpoint is gone"));
        Assert.That(rows[1], Does.StartWith("unreachable pending 1 connection error: "));
    }

    /// <summary>
    /// Inserts orders, then sets the test's clock a second ahead of the database's: the fan-out
    /// in the next claim's transaction makes their deliveries due at that transaction's time by
    /// the database's clock, which a clock left behind would not reach. The waits the tests cross
    /// are stamped later still, by the claim or the result write that starts them.
    /// </summary>
    private async Task InsertAsync(string values)
    {
        await database.ExecuteAsync("INSERT INTO orders VALUES " + values);
        var now = await database.ScalarAsync<DateTime>("SELECT now()");
        clock.SetUtcNow(new DateTimeOffset(now, TimeSpan.Zero) + TimeSpan.FromSeconds(1));
    }

    private SubscriptionConfig Subscription(string name, Uri? url = null) => new()
    {
        Name = name,
        Trigger = "orders_changed",
        Webhook = new WebhookConfig { Url = url ?? receiver.Url(), Timeout = TimeSpan.FromSeconds(5) },
        Retry = new RetryConfig { MaxAttempts = 3, InitialInterval = TimeSpan.FromSeconds(10), MaxInterval = TimeSpan.FromMinutes(1) },
    };

    /// <summary>A worker of the subscriptions, as the host wires one, whose claims go by the test's clock.</summary>
    private async Task<DeliveryWorker> WorkerAsync(params SubscriptionConfig[] configs) => await WorkerAsync(configs, WorkerConfig.DefaultLease);

    private async Task<DeliveryWorker> WorkerAsync(SubscriptionConfig config, TimeSpan lease) => await WorkerAsync([config], lease);

    private async Task<DeliveryWorker> WorkerAsync(SubscriptionConfig[] configs, TimeSpan lease)
    {
        var registered = await new SubscriptionRegistry(database.DataSource).SyncAsync(WorkerConfig.DefaultGroup, configs, CancellationToken.None);
        var subscriptions = registered.Select(s =>
        {
            var target = new WebhookTarget(s.Config, 4, clock);
            targets.Add(target);
            return new ActiveSubscription(s.Id, s.Config, target, new RetryPolicy(s.Config.Retry));
        }).ToList();
        var store = new DeliveryStore(database.DataSource)
        {
            Clock = clock,
            ProtectedSubscriptions = TargetProtection.ProtectedIds(subscriptions),
            BatchedSubscriptions = subscriptions.Where(s => s.Config.Batch is not null).ToDictionary(s => s.Id, s => s.Config.Batch!.MaxEvents),
        };
        var options = new WorkerConfig { Lease = lease };
        return new DeliveryWorker(options, subscriptions, store, new WakeSignal(), clock, NullLogger.Instance, new WorkerMetrics(Metrics.NewCustomRegistry()));
    }

    private async Task<(string Status, int Attempts, int? LastStatus)> DeliveryAsync()
    {
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries"), Is.EqualTo(1));
        var row = (await database.ScalarAsync<string>("SELECT status || ' ' || attempts || ' ' || coalesce(last_status::text, '') FROM trigger_events.deliveries")).Split(' ');
        return (row[0], int.Parse(row[1], System.Globalization.CultureInfo.InvariantCulture),
            row[2].Length == 0 ? null : int.Parse(row[2], System.Globalization.CultureInfo.InvariantCulture));
    }

    private async Task<IReadOnlyList<Postgres.Operations.DeliveryRow>> PageAsync() =>
        (await ConsoleQueries.DeliveriesAsync(database.DataSource, new DeliveryPage("hook", Status: null), CancellationToken.None))!;

    private Task<long> FirstEventIdAsync() => database.ScalarAsync<long>("SELECT min(id) FROM trigger_events.event_log");
}
