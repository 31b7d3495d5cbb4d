using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using Prometheus;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;
using TriggerEvents.Worker.Delivery;
using TriggerEvents.Worker.Delivery.Targets;
using TriggerEvents.Worker.Signals;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// The delivery path in process, wired as the host wires it, driven one round at a time
/// (<see cref="DeliveryWorker.RunRoundAsync"/>) on a clock the test moves: waits a running worker
/// would sleep through (a retry's backoff, a lease, a batch's max_wait) are crossed by moving the
/// clock. The database and the receiver are real. For behaviour that needs no process: what is
/// about processes (signals, crashes, replicas) runs the executable (<see cref="DeliveryHarness"/>).
/// </summary>
internal sealed class RoundHarness : IAsyncDisposable
{
    private readonly List<IDeliveryTarget> targets = [];
    private readonly List<SubscriptionConfig> registered = [];

    private RoundHarness(TestDatabase database, WebhookReceiver receiver)
    {
        Database = database;
        Receiver = receiver;
    }

    public TestDatabase Database { get; }

    public WebhookReceiver Receiver { get; }

    public FakeTimeProvider Clock { get; } = new(DateTimeOffset.UtcNow);

    /// <summary>A database with <c>orders (id int PRIMARY KEY, status text)</c> attached as <c>orders_changed</c>, and a receiver.</summary>
    public static async Task<RoundHarness> CreateAsync()
    {
        var database = await TestDatabase.CreateAsync();
        var receiver = await WebhookReceiver.StartAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, status text)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        return new RoundHarness(database, receiver);
    }

    /// <summary>
    /// A subscription of <c>orders_changed</c> posting to the receiver (or <paramref name="url"/>):
    /// 3 attempts unless given, 10 s to 1 min apart, a 5 s timeout unless given (generous: a loaded
    /// machine must not turn an answer into a timeout).
    /// </summary>
    public SubscriptionConfig Subscription(string name, Uri? url = null, int maxAttempts = 3, TimeSpan? timeout = null) => new()
    {
        Name = name,
        Trigger = "orders_changed",
        Webhook = new WebhookConfig { Url = url ?? Receiver.Url(), Timeout = timeout ?? TimeSpan.FromSeconds(5) },
        Retry = new RetryConfig { MaxAttempts = maxAttempts, InitialInterval = TimeSpan.FromSeconds(10), MaxInterval = TimeSpan.FromMinutes(1) },
    };

    /// <summary>Registers the subscriptions as the worker does, and a worker of them whose claims go by <see cref="Clock"/>.</summary>
    public async Task<DeliveryWorker> WorkerAsync(params SubscriptionConfig[] configs) => await WorkerAsync(configs, WorkerConfig.DefaultLease);

    public Task<DeliveryWorker> WorkerAsync(SubscriptionConfig[] configs, TimeSpan lease) => WorkerAsync(configs, new WorkerConfig { Lease = lease });

    public async Task<DeliveryWorker> WorkerAsync(SubscriptionConfig[] configs, WorkerConfig settings)
    {
        registered.AddRange(configs);
        var subscriptions = (await new SubscriptionRegistry(Database.DataSource).SyncAsync(WorkerConfig.DefaultGroup, configs, CancellationToken.None)).Select(s =>
        {
            var target = new WebhookTarget(s.Config, 4, Clock);
            targets.Add(target);
            return new ActiveSubscription(s.Id, s.Config, target, new RetryPolicy(s.Config.Retry));
        }).ToList();
        var store = new DeliveryStore(Database.DataSource)
        {
            Clock = Clock,
            ProtectedSubscriptions = TargetProtection.ProtectedIds(subscriptions),
            BatchedSubscriptions = subscriptions.Where(s => s.Config.Batch is not null).ToDictionary(s => s.Id, s => s.Config.Batch!.MaxEvents),
            OrderedSubscriptions = subscriptions.Where(s => s.Config.Ordering is not null).Select(s => s.Id).ToHashSet(),
        };
        return new DeliveryWorker(
            settings, subscriptions, store, new WakeSignal(), Clock, NullLogger.Instance,
            new WorkerMetrics(Metrics.NewCustomRegistry()));
    }

    /// <summary>
    /// Inserts orders (<c>(1, 'new'), ...</c>), then sets the clock a second ahead of the
    /// database's: the fan-out in the next claim's transaction makes their deliveries due at
    /// that transaction's time by the database's clock, which a clock left behind would not
    /// reach. The waits the tests cross are stamped later still, by the claim or the result
    /// write that starts them.
    /// </summary>
    public Task InsertAsync(string values) => WriteAsync("INSERT INTO orders VALUES " + values);

    /// <summary>
    /// Runs <paramref name="statements"/> (writes to <c>orders</c>), then sets the clock as
    /// <see cref="InsertAsync"/> does: after the last of them, so that on a loaded machine the
    /// time the writes took is not left between the clock and the next fan-out.
    /// </summary>
    public async Task WriteAsync(params string[] statements)
    {
        foreach (var statement in statements)
        {
            await Database.ExecuteAsync(statement);
        }

        var now = await Database.ScalarAsync<DateTime>("SELECT now()");
        Clock.SetUtcNow(new DateTimeOffset(now, TimeSpan.Zero) + TimeSpan.FromSeconds(1));
    }

    /// <summary>Inserts orders <paramref name="from"/>..<paramref name="to"/> in one statement (see <see cref="InsertAsync"/>).</summary>
    public Task InsertOrdersAsync(int from, int to) =>
        InsertAsync(string.Join(", ", Enumerable.Range(from, to - from + 1).Select(i => $"({i}, 'new')")));

    /// <summary>
    /// Runs rounds until <paramref name="expected"/> deliveries are delivered or dead, moving the
    /// clock past the longest retry wait whenever a round finds nothing due.
    /// </summary>
    public async Task<IReadOnlyList<DeliveryRow>> RunUntilSettledAsync(DeliveryWorker worker, int expected)
    {
        IReadOnlyList<DeliveryRow> rows = [];
        for (var round = 0; round < 50; round++)
        {
            if (await worker.RunRoundAsync(CancellationToken.None) == 0)
            {
                Clock.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(1));
            }

            rows = await DeliveryLedger.DeliveriesAsync(Database.DataSource);
            if (rows.Count == expected && rows.All(r => r.Status is "delivered" or "dead"))
            {
                return rows;
            }
        }

        Assert.Fail($"{expected} deliveries not settled after 50 rounds: {string.Join(", ", rows.Select(r => $"{r.EventId} {r.Status} after {r.Attempts}"))}");
        return rows;
    }

    public Task<IReadOnlyList<AttemptRow>> AttemptsAsync() => DeliveryLedger.AttemptsAsync(Database.DataSource);

    public Task<IReadOnlyList<DeliveryRow>> DeliveriesAsync() => DeliveryLedger.DeliveriesAsync(Database.DataSource);

    /// <summary>
    /// Every delivery counts as many attempts as the attempt log holds for it, and for those
    /// posting to the receiver, it got every attempt that was answered and no more than were made;
    /// <paramref name="delivered"/> and <paramref name="dead"/> deliveries in all.
    /// </summary>
    public async Task AssertLedgerAsync(int delivered, int dead)
    {
        var rows = await DeliveryLedger.DeliveriesAsync(Database.DataSource);
        var attempts = await AttemptsAsync();
        var captured = await Database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log");
        Assert.That(rows, Has.Count.EqualTo(captured * registered.Count), "a delivery of every captured event to every subscription");
        Assert.That(rows.Count(r => r.Status == "delivered"), Is.EqualTo(delivered), "delivered");
        Assert.That(rows.Count(r => r.Status == "dead"), Is.EqualTo(dead), "dead");
        foreach (var row in rows)
        {
            var logged = attempts.Where(a => a.Subscription == row.Subscription && a.EventId == row.EventId).ToList();
            Assert.That(logged, Has.Count.EqualTo(row.Attempts), $"{row.Subscription}/{row.EventId}: attempts counted and logged");
            if (registered.Single(c => c.Name == row.Subscription).Webhook.Url.Port != Receiver.BaseUrl.Port)
            {
                continue;
            }

            // Every answered attempt reached it; one the worker gave up on (a timeout) may have too.
            // Delivered means the receiver accepted it, once; dead means it never did, and why.
            var id = WebhookId.For(row.EventId, row.Subscription);
            var accepted = Receiver.Requests.Count(r => r.WebhookId == id && r.Succeeded);
            Assert.That(accepted, Is.EqualTo(row.Status == "delivered" ? 1 : 0), $"{id}: {row.Status}, accepted by the receiver");
            if (row.Status == "dead")
            {
                Assert.That(row.LastError, Is.Not.Null.And.Not.Empty, $"{id}: dead with its reason");
            }

            var received = Receiver.Requests.Count(r => r.WebhookId == id);
            Assert.That(received, Is.InRange(logged.Count(a => a.HttpStatus is not null), logged.Count),
                $"{row.Subscription}/{row.EventId}: requests received, between the answered attempts and all of them");
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var target in targets)
        {
            target.Dispose();
        }

        await Receiver.DisposeAsync();
        await Database.DisposeAsync();
    }
}

/// <summary>The rows of <c>trigger_events.deliveries</c> and <c>attempts</c>, with their subscriptions' names, as the tests compare them.</summary>
internal static class DeliveryLedger
{
    public static async Task<IReadOnlyList<DeliveryRow>> DeliveriesAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT s.name, d.event_id, d.status::text, d.attempts, d.last_status, d.last_error
            FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id
            ORDER BY s.name, d.event_id
            """);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<DeliveryRow>();
        while (await reader.ReadAsync())
        {
            rows.Add(new DeliveryRow(
                reader.GetString(0), reader.GetInt64(1), reader.GetString(2), reader.GetInt32(3),
                reader.IsDBNull(4) ? null : reader.GetInt32(4), reader.IsDBNull(5) ? null : reader.GetString(5)));
        }

        return rows;
    }

    public static async Task<IReadOnlyList<AttemptRow>> AttemptsAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT s.name, a.event_id, a.attempt, a.http_status, a.error, a.response_excerpt
            FROM trigger_events.attempt_history a JOIN trigger_events.subscriptions s ON s.id = a.subscription_id
            ORDER BY s.name, a.event_id, a.attempt, a.attempt_id
            """);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<AttemptRow>();
        while (await reader.ReadAsync())
        {
            rows.Add(new AttemptRow(
                reader.GetString(0), reader.GetInt64(1), reader.GetInt32(2), reader.IsDBNull(3) ? null : reader.GetInt32(3),
                reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5)));
        }

        return rows;
    }
}
