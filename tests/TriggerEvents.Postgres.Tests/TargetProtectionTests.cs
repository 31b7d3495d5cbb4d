using Microsoft.Extensions.Time.Testing;
using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The rate limit, the Retry-After hold and the circuit breaker as the claim and the result write
/// keep them on the subscription's row (migration 000007), driven directly. Time is moved by
/// moving the row's timestamps back.
/// </summary>
public sealed class TargetProtectionTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(1);
    private TestDatabase database = null!;
    private DeliveryStore store = null!;
    private int subscriptionId;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        subscriptionId = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight) VALUES ('hook', 'orders_changed', 100) RETURNING id");
        store = new DeliveryStore(database.DataSource) { ProtectedSubscriptions = new HashSet<int> { subscriptionId } };
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 50) g");
        await database.FanOutAsync();
    }

    [TearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private Task<ClaimBatch> ClaimAsync(int limit = 100) =>
        store.ClaimAsync(subscriptionId, Guid.NewGuid(), limit, Lease, ClaimCursor.Sweep, takeOverExpired: true, fanOut: null,
            DeliveryStore.InlineEventBytes, CancellationToken.None);

    private static DeliveryResult Result(ClaimedDelivery claimed, int? status, BreakerSignal? signal, TimeSpan? hold = null) =>
        new(claimed.Key, claimed.Attempt, status is >= 200 and < 300 ? DeliveryResultKind.Delivered : DeliveryResultKind.Retry,
            TimeSpan.Zero, status, status is >= 200 and < 300 ? null : $"HTTP {status}", DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(2), null)
        {
            Target = new TargetSignal(signal, hold),
        };

    private async Task<List<CircuitOpened>> RecordAsync(ClaimBatch claimed, Func<ClaimedDelivery, DeliveryResult> result)
    {
        var opened = new List<CircuitOpened>();
        var owner = await database.ScalarAsync<Guid>(
            "SELECT lease_owner FROM trigger_events.deliveries WHERE event_id = $1", claimed.Deliveries[0].Event.Id);
        await store.RecordAsync(owner, [.. claimed.Deliveries.Select(result)], writtenBefore: false, opened, CancellationToken.None);
        return opened;
    }

    private Task<string> CircuitAsync() => database.ScalarAsync<string>("SELECT circuit FROM trigger_events.subscriptions WHERE id = $1", subscriptionId);

    private Task EnableBreakerAsync(int minRequests = 4, int pauseAfter = 2) => database.ExecuteAsync(
        """
        UPDATE trigger_events.subscriptions
        SET breaker_failure_rate = 0.5, breaker_min_requests = $2, breaker_window = '1 minute', breaker_open_for = '30 seconds',
            breaker_pause_after = $3
        WHERE id = $1
        """, subscriptionId, minRequests, pauseAfter);

    /// <summary>Moves the open circuit's time back past open_for.</summary>
    private Task OpenForPassesAsync() => database.ExecuteAsync(
        "UPDATE trigger_events.subscriptions SET circuit_changed_at = now() - interval '31 seconds' WHERE id = $1", subscriptionId);

    [Test]
    public async Task A_claim_takes_at_most_the_budget_and_the_next_one_waits_for_a_token_without_spending_attempts()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET rate_per_second = 5 WHERE id = $1", subscriptionId);

        var first = await ClaimAsync();
        var second = await ClaimAsync();

        Assert.That(first.Deliveries, Has.Count.EqualTo(5), "a full bucket is one second's worth");
        Assert.That(first.Protection!.RateLimited, Is.True, "due deliveries were left behind");
        Assert.That(second.Deliveries, Is.Empty);
        Assert.That(second.Protection!.WaitFor, Is.Not.Null.And.GreaterThan(TimeSpan.Zero).And.LessThanOrEqualTo(TimeSpan.FromMilliseconds(200)),
            "the next token comes within a fifth of a second");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE attempts > 0"), Is.EqualTo(5),
            "waiting for the budget spends no attempt");

        // A second later (the bucket's time moved back) the next five may go, and no more.
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET tokens_at = tokens_at - interval '1 second' WHERE id = $1", subscriptionId);
        Assert.That((await ClaimAsync()).Deliveries, Has.Count.EqualTo(5));
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET tokens_at = tokens_at - interval '1 hour' WHERE id = $1", subscriptionId);
        Assert.That((await ClaimAsync()).Deliveries, Has.Count.EqualTo(5), "an idle hour still fills the bucket to one second's worth only");
    }

    [Test]
    public async Task A_rate_below_one_a_second_still_lets_one_request_through_then_waits_for_its_token()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET rate_per_second = 0.5 WHERE id = $1", subscriptionId);
        // Claims at times the test sets: on a loaded machine two claims in a row were 133 ms apart.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        store = new DeliveryStore(database.DataSource) { ProtectedSubscriptions = new HashSet<int> { subscriptionId }, Clock = clock };

        var first = await ClaimAsync();
        var second = await ClaimAsync();
        clock.Advance(TimeSpan.FromSeconds(1.5));
        var third = await ClaimAsync();
        clock.Advance(TimeSpan.FromSeconds(0.5));
        var fourth = await ClaimAsync();

        Assert.That(first.Deliveries, Has.Count.EqualTo(1));
        Assert.That(second.Deliveries, Is.Empty);
        Assert.That(second.Protection!.WaitFor, Is.EqualTo(TimeSpan.FromSeconds(2)), "a token every two seconds");
        Assert.That(third.Deliveries, Is.Empty);
        Assert.That(third.Protection!.WaitFor, Is.EqualTo(TimeSpan.FromSeconds(0.5)));
        Assert.That(fourth.Deliveries, Has.Count.EqualTo(1), "its token has come");
    }

    [Test]
    public async Task A_claim_that_is_not_limited_does_not_count_as_rate_limited()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET rate_per_second = 1000 WHERE id = $1", subscriptionId);

        var claimed = await ClaimAsync();

        Assert.That(claimed.Deliveries, Has.Count.EqualTo(50));
        Assert.That(claimed.Protection!.RateLimited, Is.False);
        Assert.That(claimed.Protection.WaitFor, Is.Null);
    }

    [Test]
    public async Task A_subscription_without_limit_or_breaker_is_not_written_by_its_claims()
    {
        var plain = new DeliveryStore(database.DataSource);
        var before = await database.ScalarAsync<string>("SELECT xmin::text FROM trigger_events.subscriptions WHERE id = $1", subscriptionId);

        var claimed = await plain.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);

        Assert.That(claimed, Has.Count.EqualTo(50));
        Assert.That(await database.ScalarAsync<string>("SELECT xmin::text FROM trigger_events.subscriptions WHERE id = $1", subscriptionId), Is.EqualTo(before));
    }

    [Test]
    public async Task A_Retry_After_holds_the_whole_subscription_back()
    {
        // No limit and no breaker: the hold applies to every subscription.
        var plain = new DeliveryStore(database.DataSource);
        var owner = Guid.NewGuid();
        var first = await plain.ClaimAsync(subscriptionId, owner, 1, Lease, CancellationToken.None);
        await plain.RecordAsync(owner, [Result(first[0], 503, null, TimeSpan.FromMinutes(10))], writtenBefore: false, CancellationToken.None);

        var held = await plain.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        var until = await database.ScalarAsync<double>(
            "SELECT extract(epoch FROM held_until - now())::float8 FROM trigger_events.subscriptions WHERE id = $1", subscriptionId);
        var attempted = await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE attempts > 0");
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET held_until = now() - interval '1 second' WHERE id = $1", subscriptionId);
        var after = await plain.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);

        Assert.That(held, Is.Empty, "nothing of the subscription is claimed while it is held back");
        Assert.That(until, Is.InRange(590, 600));
        Assert.That(attempted, Is.EqualTo(1), "the held deliveries spent no attempt");
        Assert.That(after, Has.Count.EqualTo(50), "once the hold passed, everything due goes");
    }

    [Test]
    public async Task The_breaker_opens_probes_once_and_closes_on_the_probes_success()
    {
        await EnableBreakerAsync();
        var batch = await ClaimAsync(limit: 4);
        var opened = await RecordAsync(batch, c => Result(c, c.Event.Id % 2 == 0 ? 200 : 503, c.Event.Id % 2 == 0 ? BreakerSignal.Success : BreakerSignal.Failure));

        Assert.That(opened, Is.EqualTo(new[] { new CircuitOpened(subscriptionId, 1, false) }), "2 of 4 failed: 50%");
        Assert.That(await CircuitAsync(), Is.EqualTo("open"));
        var whileOpen = await ClaimAsync();
        Assert.That(whileOpen.Deliveries, Is.Empty, "an open circuit claims nothing");
        Assert.That(whileOpen.Protection!.WaitFor, Is.GreaterThan(TimeSpan.FromSeconds(29)).And.LessThanOrEqualTo(TimeSpan.FromSeconds(30)));

        await OpenForPassesAsync();
        var probe = await ClaimAsync();
        var duringProbe = await ClaimAsync();
        Assert.That(probe.Deliveries, Has.Count.EqualTo(1), "exactly one probe");
        Assert.That(probe.Protection!.Circuit, Is.EqualTo("half_open"));
        Assert.That(duringProbe.Deliveries, Is.Empty, "nothing more while the probe is out");

        Assert.That(await RecordAsync(probe, c => Result(c, 200, BreakerSignal.Success)), Is.Empty);
        Assert.That(await CircuitAsync(), Is.EqualTo("closed"));
        Assert.That((await ClaimAsync()).Deliveries, Has.Count.EqualTo(47), "closed: everything due (45 never tried, 2 to retry)");
        Assert.That(await database.ScalarAsync<int>("SELECT circuit_opens FROM trigger_events.subscriptions WHERE id = $1", subscriptionId), Is.Zero);
    }

    [Test]
    public async Task A_failed_probe_opens_again_and_pause_after_opens_pause_the_subscription_until_resume_closes_it()
    {
        await EnableBreakerAsync(minRequests: 2, pauseAfter: 2);
        var opened = await RecordAsync(await ClaimAsync(limit: 2), c => Result(c, null, BreakerSignal.Failure));
        Assert.That(opened.Single().OpensInARow, Is.EqualTo(1));

        await OpenForPassesAsync();
        var probe = await ClaimAsync();
        var reopened = await RecordAsync(probe, c => Result(c, 502, BreakerSignal.Failure));

        Assert.That(reopened, Is.EqualTo(new[] { new CircuitOpened(subscriptionId, 2, true) }));
        var status = (await StatusQueries.GetSubscriptionStatusAsync(database.DataSource, CancellationToken.None)).Single();
        Assert.That((status.State, status.PausedBy, status.Circuit), Is.EqualTo(("paused", "breaker", "open")));
        Assert.That(status.PausedReason, Is.EqualTo("circuit breaker opened 2 times in a row without a success; last: HTTP 502"));
        await OpenForPassesAsync();
        Assert.That((await ClaimAsync()).Deliveries, Is.Empty, "a paused subscription is not probed");

        Assert.That(await SubscriptionAdmin.ResumeAsync(database.DataSource, "hook", CancellationToken.None), Is.EqualTo(ResumeResult.Resumed));
        status = (await StatusQueries.GetSubscriptionStatusAsync(database.DataSource, CancellationToken.None)).Single();
        Assert.That((status.State, status.Circuit), Is.EqualTo(("active", "closed")));
        Assert.That((await ClaimAsync()).Deliveries, Has.Count.EqualTo(50), "resumed and closed: every delivery, the three retried ones included");
    }

    [Test]
    public async Task Answers_that_are_not_failures_never_open_the_breaker()
    {
        await EnableBreakerAsync(minRequests: 2);
        var batch = await ClaimAsync(limit: 10);

        var opened = await RecordAsync(batch, c => Result(c, c.Event.Id % 2 == 0 ? 429 : 404, BreakerSignal.Other));

        Assert.That(opened, Is.Empty);
        Assert.That(await CircuitAsync(), Is.EqualTo("closed"));
        Assert.That(
            await database.ScalarAsync<int>("SELECT window_requests FROM trigger_events.subscriptions WHERE id = $1", subscriptionId), Is.EqualTo(10),
            "they count as attempts");
    }

    [Test]
    public async Task A_result_write_tried_again_after_one_that_committed_counts_its_requests_once()
    {
        await EnableBreakerAsync(minRequests: 4);
        await using var worker = NpgsqlDataSource.Create(database.WorkerConnectionString);
        var workerStore = new DeliveryStore(worker) { ProtectedSubscriptions = new HashSet<int> { subscriptionId } };
        var owner = Guid.NewGuid();
        var batch = await workerStore.ClaimAsync(subscriptionId, owner, 3, Lease, ClaimCursor.Sweep, true, null, DeliveryStore.InlineEventBytes, CancellationToken.None);
        var results = batch.Deliveries.Select(c => Result(c, 500, BreakerSignal.Failure)).ToList();

        // As the worker's role. The first write committed, but its answer was lost with the
        // connection: the recorder writes the same results again, saying so.
        await workerStore.RecordAsync(owner, results, writtenBefore: false, CancellationToken.None);
        await workerStore.RecordAsync(owner, results, writtenBefore: true, CancellationToken.None);

        Assert.That(await database.ScalarAsync<int>("SELECT window_failures FROM trigger_events.subscriptions WHERE id = $1", subscriptionId), Is.EqualTo(3),
            "3 requests failed, not 6");
        Assert.That(await CircuitAsync(), Is.EqualTo("closed"), "6 failures would have passed min_requests");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.attempts"), Is.EqualTo(3));
    }

    [Test]
    public async Task Failures_below_min_requests_or_in_an_expired_window_do_not_open_the_breaker()
    {
        await EnableBreakerAsync(minRequests: 4);
        await RecordAsync(await ClaimAsync(limit: 3), c => Result(c, 500, BreakerSignal.Failure));
        Assert.That(await CircuitAsync(), Is.EqualTo("closed"), "3 failures of 3 attempts are fewer than min_requests");

        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET window_started_at = now() - interval '2 minutes' WHERE id = $1", subscriptionId);
        await RecordAsync(await ClaimAsync(limit: 3), c => Result(c, 500, BreakerSignal.Failure));

        Assert.That(await CircuitAsync(), Is.EqualTo("closed"), "the window started again: 3 of 3");
        Assert.That(await database.ScalarAsync<int>("SELECT window_failures FROM trigger_events.subscriptions WHERE id = $1", subscriptionId), Is.EqualTo(3));
    }

    [Test]
    public async Task The_worker_role_may_claim_and_record_a_protected_subscription()
    {
        await EnableBreakerAsync(minRequests: 2);
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET rate_per_second = 100 WHERE id = $1", subscriptionId);
        await using var worker = NpgsqlDataSource.Create(database.WorkerConnectionString);
        var workerStore = new DeliveryStore(worker) { ProtectedSubscriptions = new HashSet<int> { subscriptionId } };
        var owner = Guid.NewGuid();

        var claimed = await workerStore.ClaimAsync(subscriptionId, owner, 2, Lease, ClaimCursor.Sweep, true, null, DeliveryStore.InlineEventBytes, CancellationToken.None);
        var opened = new List<CircuitOpened>();
        await workerStore.RecordAsync(
            owner, [.. claimed.Deliveries.Select(c => Result(c, 503, BreakerSignal.Failure, TimeSpan.FromSeconds(5)))], false, opened, CancellationToken.None);

        Assert.That(claimed.Deliveries, Has.Count.EqualTo(2));
        Assert.That(opened, Has.Count.EqualTo(1));
        Assert.That(await CircuitAsync(), Is.EqualTo("open"));
    }

    [Test]
    public async Task The_file_s_rate_limit_and_breaker_are_registered_and_a_breaker_taken_out_closes_the_circuit()
    {
        var registry = new SubscriptionRegistry(database.DataSource);
        var config = new SubscriptionConfig
        {
            Name = "protected",
            Trigger = "orders_changed",
            Webhook = new WebhookConfig { Url = new Uri("http://127.0.0.1:9/hook") },
            RateLimit = new RateLimit(20),
            CircuitBreaker = new CircuitBreakerConfig { FailureRate = 0.25, MinRequests = 7, OpenFor = TimeSpan.FromSeconds(3) },
        };

        await registry.SyncAsync("default", [config], CancellationToken.None);
        var registered = await database.ScalarAsync<string>(
            """
            SELECT concat_ws(' ', rate_per_second, breaker_failure_rate, breaker_min_requests, breaker_window, breaker_open_for, breaker_pause_after)
            FROM trigger_events.subscriptions WHERE name = 'protected'
            """);
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET circuit = 'open', circuit_changed_at = now(), circuit_opens = 3 WHERE name = 'protected'");
        await registry.SyncAsync("default", [config with { CircuitBreaker = null, RateLimit = null }], CancellationToken.None);

        Assert.That(registered, Is.EqualTo("20 0.25 7 00:01:00 00:00:03 10"));
        Assert.That(
            await database.ScalarAsync<string>(
                "SELECT concat_ws(' ', coalesce(rate_per_second::text, '-'), coalesce(breaker_failure_rate::text, '-'), circuit, circuit_opens) FROM trigger_events.subscriptions WHERE name = 'protected'"),
            Is.EqualTo("- - closed 0"));
    }
}
