using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The claim of an ordered subscription (<c>ordering: key</c>, migration 000008), driven
/// directly: a key's deliveries taken as one run by one claimer, in fan-out order, other keys
/// never held back.
/// </summary>
public sealed class KeyOrderingTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(1);
    private TestDatabase database = null!;
    private DeliveryStore store = null!;
    private int subscriptionId;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        store = new DeliveryStore(database.DataSource);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, customer int, amount int)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        // '{}': the table's primary key.
        subscriptionId = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight, ordering_key) VALUES ('hook', 'orders_changed', 1000, '{}') RETURNING id");
    }

    [TearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private static DeliveryResult Result(ClaimedDelivery claimed, DeliveryResultKind kind) =>
        new(claimed.Key, claimed.Attempt, kind, kind == DeliveryResultKind.Retry ? TimeSpan.FromHours(1) : TimeSpan.Zero,
            kind == DeliveryResultKind.Delivered ? 200 : 500, null, DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(1), null);

    private async Task<List<long>> ClaimIdsAsync(Guid owner, int limit = 100) =>
        [.. (await store.ClaimAsync(subscriptionId, owner, limit, Lease, CancellationToken.None)).Select(c => c.Event.Id)];

    /// <summary>What a claim sends at once: the first of each key's run, and every delivery claimed alone.</summary>
    private static List<long> Heads(IEnumerable<ClaimedDelivery> claimed) =>
        [.. claimed.Where(c => c.RunId is null || c.RunId == c.Event.Id).Select(c => c.Event.Id).Order()];

    /// <summary>The runs of keys a claim took, each in the order the worker sends it.</summary>
    private static List<List<long>> Runs(IEnumerable<ClaimedDelivery> claimed) =>
        [.. claimed.Where(c => c.RunId is not null).GroupBy(c => c.RunId!.Value).OrderBy(g => g.Key)
            .Select(g => g.OrderBy(c => (c.OrderSeq, c.Event.Id)).Select(c => c.Event.Id).ToList())];

    /// <summary>Gives deliveries back unsent, as the worker does with the rest of a run behind a retry.</summary>
    private Task GiveBackAsync(Guid owner, IEnumerable<ClaimedDelivery> unsent) =>
        store.ReleaseAsync(owner, [.. unsent.Select(c => c.Lease(sent: false))], CancellationToken.None);

    private Task<long> EventOfAsync(string condition) =>
        database.ScalarAsync<long>($"SELECT max(id) FROM trigger_events.event_log WHERE {condition}");

    /// <summary>Fans out as this release's workers do: parking each key's waiting deliveries (migration 000016).</summary>
    private async Task ParkingFanOutAsync()
    {
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await ParkingFanOutAsync(connection, transaction);
        await transaction.CommitAsync();
    }

    private static async Task ParkingFanOutAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        await using var command = new NpgsqlCommand(
            "SELECT set_config('trigger_events.park_waiting', 'on', true), trigger_events.fan_out()", connection, transaction);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>Each delivery as event id, then "parked" (due at infinity), "due" or its status.</summary>
    private Task<string> StatesAsync() =>
        database.ScalarAsync<string>($"""
            SELECT string_agg(event_id || ':' || CASE WHEN status <> 'pending' THEN status::text
                                                      WHEN next_attempt_at = 'infinity' THEN 'parked' ELSE 'due' END, ' ' ORDER BY event_id)
            FROM trigger_events.deliveries WHERE subscription_id = {subscriptionId}
            """);

    private static DeliveryResult KeyedResult(ClaimedDelivery claimed, DeliveryResultKind kind) => Result(claimed, kind) with { Keyed = true };

    [Test]
    public async Task A_keys_later_deliveries_are_made_parked_and_go_as_its_run()
    {
        // Events 1 and 2: keys 1 and 2; events 3 and 4: key 1 again, in later transactions.
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0), (2, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1 WHERE id = 1");
        await database.ExecuteAsync("UPDATE orders SET amount = 2 WHERE id = 1");

        await ParkingFanOutAsync();

        Assert.That(await StatesAsync(), Is.EqualTo("1:due 2:due 3:parked 4:parked"), "key 1's later events wait out of the claims' range");
        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);
        Assert.That(Heads(claimed), Is.EqualTo(new long[] { 1, 2 }));
        Assert.That(Runs(claimed), Is.EqualTo(new[] { new long[] { 1, 3, 4 } }), "the parked ones go behind their head, in order");
    }

    /// <summary>Key 1 with six events (an INSERT, then five UPDATEs), fanned out with parking, and a run of its first four claimed by <paramref name="owner"/>.</summary>
    private async Task ClaimRunOfFourAsync(Guid owner, TimeSpan lease)
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        for (var i = 1; i <= 5; i++)
        {
            await database.ExecuteAsync("UPDATE orders SET amount = $1 WHERE id = 1", i);
        }

        await ParkingFanOutAsync();
        // One request's worth: the head and three followers.
        var run = await store.ClaimAsync(subscriptionId, owner, 1, lease, CancellationToken.None);
        Assert.That(Runs(run), Is.EqualTo(new[] { new long[] { 1, 2, 3, 4 } }));
    }

    private Task<List<ClaimedDelivery>> TakeRunOnAsync(Guid owner, long last, int rows = 100, int attempt = 1) =>
        store.TakeRunOnAsync(owner, new DeliveryKey(subscriptionId, last), attempt, rows, Lease, DeliveryStore.InlineEventBytes, CancellationToken.None);

    [Test]
    public async Task The_worker_sending_a_keys_run_takes_the_key_on_in_order_and_nobody_else_can()
    {
        var owner = Guid.NewGuid();
        await ClaimRunOfFourAsync(owner, Lease);

        Assert.That(await TakeRunOnAsync(Guid.NewGuid(), last: 4), Is.Empty, "another worker holds nothing of the key");
        var first = await TakeRunOnAsync(owner, last: 4, rows: 1);
        var rest = await TakeRunOnAsync(owner, last: 5);

        Assert.That(first.Select(c => c.Event.Id), Is.EqualTo(new long[] { 5 }));
        Assert.That(rest.Select(c => c.Event.Id), Is.EqualTo(new long[] { 6 }), "after the last one taken, in the key's order");
        Assert.That(rest.Single().Attempt, Is.EqualTo(1), "its attempt counted, as a claim counts it");
        Assert.That(rest.Single().Event.NewRow?.ToString(), Does.Contain("\"amount\": 5"), "with its values, as a claim brings them");
        Assert.That(await database.ScalarAsync<long>(
                "SELECT count(*) FROM trigger_events.deliveries WHERE status = 'in_flight' AND lease_owner = $1 AND next_attempt_at > now()", owner),
            Is.EqualTo(6), "all six leased to the worker sending the run");
        Assert.That(await TakeRunOnAsync(owner, last: 6), Is.Empty, "nothing more of the key");
        Assert.That(await ClaimIdsAsync(Guid.NewGuid()), Is.Empty, "the key is in flight");
    }

    [TestCase("lease", TestName = "A run whose lease ran out is not taken on")]
    [TestCase("UPDATE trigger_events.subscriptions SET enabled = false", TestName = "A paused subscription's run is not taken on")]
    [TestCase("UPDATE trigger_events.subscriptions SET circuit = 'open'", TestName = "A run is not taken on once the circuit opened")]
    [TestCase("UPDATE trigger_events.subscriptions SET rate_per_second = 10", TestName = "A run is not taken on once the subscription is rate limited")]
    [TestCase("UPDATE trigger_events.subscriptions SET held_until = now() + interval '1 hour'", TestName = "A run is not taken on while a Retry-After holds the subscription back")]
    [TestCase("attempt", TestName = "A run is not taken on by an attempt its delivery is no longer under")]
    public async Task Where_a_run_may_not_go_on_it_is_not_taken_on(string change)
    {
        var owner = Guid.NewGuid();
        await ClaimRunOfFourAsync(owner, change == "lease" ? TimeSpan.FromMilliseconds(1) : Lease);
        if (change == "lease")
        {
            await Task.Delay(50);
        }
        else if (change != "attempt")
        {
            await database.ExecuteAsync(change);
        }

        // The run was claimed under attempt 1; attempt 2 would be a take-over of its lease since.
        Assert.That(await TakeRunOnAsync(owner, last: 4, attempt: change == "attempt" ? 2 : 1), Is.Empty);
        Assert.That(await StatesAsync(), Is.EqualTo("1:in_flight 2:in_flight 3:in_flight 4:in_flight 5:parked 6:parked"));
    }

    [Test]
    public async Task A_run_is_taken_on_up_to_a_delivery_another_transaction_holds_locked_never_past_it()
    {
        var owner = Guid.NewGuid();
        await ClaimRunOfFourAsync(owner, Lease);
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var lockSixth = new NpgsqlCommand("SELECT FROM trigger_events.deliveries WHERE event_id = 6 FOR UPDATE", connection, transaction))
        {
            await lockSixth.ExecuteNonQueryAsync();
        }

        Assert.That((await TakeRunOnAsync(owner, last: 4)).Select(c => c.Event.Id), Is.EqualTo(new long[] { 5 }));
        await using (var lockFifth = new NpgsqlCommand("SELECT FROM trigger_events.deliveries WHERE event_id = 5 FOR UPDATE", connection, transaction))
        {
            await lockFifth.ExecuteNonQueryAsync();
        }

        await transaction.RollbackAsync();
        Assert.That((await TakeRunOnAsync(owner, last: 5)).Select(c => c.Event.Id), Is.EqualTo(new long[] { 6 }), "once the lock is gone");
    }

    [Test]
    public async Task A_run_is_taken_on_by_primary_key_however_few_pending_deliveries_the_statistics_show()
    {
        // Statistics gathered while nearly every delivery was finished, as autovacuum gathers
        // them after a drain, then a backlog: deliveries_pending looks nearly empty to the planner.
        await database.ExecuteAsync("INSERT INTO orders (id, amount) SELECT g, 0 FROM generate_series(1, 2000) AS g");
        await ParkingFanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");
        await database.ExecuteAsync("ANALYZE trigger_events.deliveries");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'pending'");
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using (var settings = new NpgsqlCommand(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off; SET enable_hashjoin = off; SET enable_mergejoin = off", connection))
        {
            await settings.ExecuteNonQueryAsync();
        }

        var plan = await GenericPlan.ExplainAsync(connection, DeliveryStore.TakeRunOnSql,
            ("int", subscriptionId.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("uuid", $"'{Guid.NewGuid()}'"), ("bigint", "1"), ("int", "400"),
            ("interval", "'1 minute'"), ("int", "65536"), ("timestamptz", "NULL"), ("int", "1"));

        // Neither claim index can look a delivery up by event: each one taken would walk the
        // subscription's whole pending queue, and the run's last member its leases, finished
        // ones included until vacuum. Three probes by event: the run's last member, each
        // delivery locked, each one updated.
        var lines = plan.ToList();
        var shown = string.Join('\n', lines);
        Assert.That(lines.Count(l => l.Contains("Index Scan using deliveries_pkey")), Is.EqualTo(3), shown);
        Assert.That(lines[lines.FindIndex(l => l.Contains("LockRows")) + 1], Does.Contain("Index Scan using deliveries_pkey"), shown);
        Assert.That(lines, Has.None.Contains("deliveries_pending").And.None.Contains("deliveries_leased"), shown);
    }

    [Test]
    public async Task A_finished_delivery_makes_the_next_of_its_key_due_and_an_empty_claim_takes_none_before()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await ParkingFanOutAsync();
        var owner = Guid.NewGuid();
        var first = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        await database.ExecuteAsync("UPDATE orders SET amount = 1 WHERE id = 1");
        await database.ExecuteAsync("UPDATE orders SET amount = 2 WHERE id = 1");
        await ParkingFanOutAsync();
        Assert.That(await StatesAsync(), Is.EqualTo("1:in_flight 2:parked 3:parked"));
        Assert.That(await ClaimIdsAsync(Guid.NewGuid()), Is.Empty, "the key is in flight");

        await store.RecordAsync(owner, [KeyedResult(first.Single(), DeliveryResultKind.Delivered)], false, CancellationToken.None);

        Assert.That(await StatesAsync(), Is.EqualTo("1:delivered 2:due 3:parked"), "the next one handed on, the one after it still waiting");
        var next = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);
        Assert.That(Runs(next), Is.EqualTo(new[] { new long[] { 2, 3 } }));
    }

    [Test]
    public async Task A_dead_delivery_hands_its_key_on_too()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await ParkingFanOutAsync();
        var owner = Guid.NewGuid();
        var first = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        await database.ExecuteAsync("UPDATE orders SET amount = 1 WHERE id = 1");
        await ParkingFanOutAsync();

        await store.RecordAsync(owner, [KeyedResult(first.Single(), DeliveryResultKind.Dead)], false, CancellationToken.None);

        Assert.That(await StatesAsync(), Is.EqualTo("1:dead 2:due"), "once dead, the key continues");
    }

    [Test]
    public async Task A_result_write_waits_for_a_fan_out_parking_behind_its_delivery_and_then_hands_on_what_it_parked()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await ParkingFanOutAsync();
        var owner = Guid.NewGuid();
        var first = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        await database.ExecuteAsync("UPDATE orders SET amount = 1 WHERE id = 1");

        // The fan-out parks event 2 behind event 1 and has not committed when 1's result comes.
        await using var fanOutConnection = await database.DataSource.OpenConnectionAsync();
        await using var fanOut = await fanOutConnection.BeginTransactionAsync();
        await ParkingFanOutAsync(fanOutConnection, fanOut);
        var write = store.RecordAsync(owner, [KeyedResult(first.Single(), DeliveryResultKind.Delivered)], false, CancellationToken.None);
        await Task.Delay(500);
        Assert.That(write.IsCompleted, Is.False, "the write waits for the fan-out's lock on event 1");
        await fanOut.CommitAsync();
        Assert.That(await write, Is.EqualTo(1));

        Assert.That(await StatesAsync(), Is.EqualTo("1:delivered 2:due"), "the hand-off saw what the fan-out parked");
        Assert.That(await ClaimIdsAsync(Guid.NewGuid()), Is.EqualTo(new long[] { 2 }));
    }

    [Test]
    public async Task A_fan_out_behind_a_delivery_being_finished_parks_nothing()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await ParkingFanOutAsync();
        await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);
        await database.ExecuteAsync("UPDATE orders SET amount = 1 WHERE id = 1");

        // Event 1 is being finished by a write that has not committed: its hand-off cannot see
        // event 2, so the fan-out must not park it.
        await using var writeConnection = await database.DataSource.OpenConnectionAsync();
        await using var write = await writeConnection.BeginTransactionAsync();
        await using (var finish = new NpgsqlCommand(
            $"UPDATE trigger_events.deliveries SET status = 'delivered', lease_owner = NULL WHERE subscription_id = {subscriptionId} AND event_id = 1",
            writeConnection, write))
        {
            await finish.ExecuteNonQueryAsync();
        }

        var fanOut = ParkingFanOutAsync();
        Assert.That(await Task.WhenAny(fanOut, Task.Delay(TimeSpan.FromSeconds(10))), Is.SameAs(fanOut), "the fan-out does not wait for the write");
        await fanOut;
        await write.CommitAsync();

        Assert.That(await StatesAsync(), Is.EqualTo("1:delivered 2:due"));
    }

    [Test]
    public async Task A_sweep_makes_due_a_parked_delivery_whose_key_moved_on_without_a_hand_off()
    {
        // Not told the subscription is ordered: one that no longer is keeps what it parked.
        var ordered = store;
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await ParkingFanOutAsync();
        await ordered.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);
        await database.ExecuteAsync("UPDATE orders SET amount = 1 WHERE id = 1");
        await ParkingFanOutAsync();
        // Finished as a worker of an earlier release would: no hand-off.
        await database.ExecuteAsync($"UPDATE trigger_events.deliveries SET status = 'dead', lease_owner = NULL WHERE subscription_id = {subscriptionId} AND event_id = 1");
        var now = new DateTimeOffset(await database.ScalarAsync<DateTime>("SELECT now()"));

        var resumed = await ordered.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, new ClaimCursor(now, 1, now), takeOverExpired: false, CancellationToken.None);
        var swept = await ordered.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, ClaimCursor.Sweep, takeOverExpired: false, CancellationToken.None);

        Assert.That(resumed.Deliveries, Is.Empty, "a claim from its cursor does not look at parked deliveries");
        Assert.That(swept.Deliveries.Select(c => c.Event.Id), Is.EqualTo(new long[] { 2 }), "the sweep made it due, and its claim took it");
    }

    [Test]
    public async Task An_empty_claim_behind_a_busy_key_probes_none_of_its_parked_deliveries()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await ParkingFanOutAsync();
        Assert.That(await ClaimIdsAsync(Guid.NewGuid()), Is.EqualTo(new long[] { 1 }));
        await database.ExecuteAsync("DO $$ BEGIN FOR i IN 1..2000 LOOP UPDATE orders SET amount = amount + 1 WHERE id = 1; END LOOP; END $$");
        await ParkingFanOutAsync();
        Assert.That(await database.ScalarAsync<long>($"SELECT count(*) FROM trigger_events.deliveries WHERE subscription_id = {subscriptionId} AND next_attempt_at = 'infinity'"),
            Is.EqualTo(2000));

        var plan = await ClaimPlanAsync(analyze: true);

        var probes = plan.Where(l => l.Contains("using deliveries_key_order", StringComparison.Ordinal) && l.Contains("loops=", StringComparison.Ordinal)
                                     && !l.Contains("never executed", StringComparison.Ordinal)).Select(l => PlanNumber(l, "loops")).ToList();
        Assert.That(probes, Has.All.LessThan(10), string.Join('\n', plan));
        Assert.That(await ClaimIdsAsync(Guid.NewGuid()), Is.Empty);

        // The sweep probes each parked delivery once, as the worker runs it (pinned plan settings).
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using (var settings = new NpgsqlCommand(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off; SET enable_hashjoin = off; SET enable_mergejoin = off; " +
            "SET plan_cache_mode = force_generic_plan", connection))
        {
            await settings.ExecuteNonQueryAsync();
        }

        await using var explain = new NpgsqlCommand("EXPLAIN (ANALYZE) " + KeyOrdering.UnparkSql, connection);
        explain.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
        var sweepPlan = new List<string>();
        await using (var reader = await explain.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                sweepPlan.Add(reader.GetString(0));
            }
        }

        var sweepProbes = sweepPlan.Where(l => l.Contains("using deliveries_key_order", StringComparison.Ordinal) && l.Contains("loops=", StringComparison.Ordinal))
            .Select(l => PlanNumber(l, "loops")).ToList();
        Assert.That(sweepProbes, Is.Not.Empty.And.All.LessThanOrEqualTo(2000), string.Join('\n', sweepPlan));
    }

    [Test]
    public async Task The_fan_out_computes_each_ordered_deliverys_key_once()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, customer, amount) SELECT g, g % 7, 0 FROM generate_series(1, 50) g");
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var track = new NpgsqlCommand("SET LOCAL track_functions = 'all'", connection, transaction))
        {
            await track.ExecuteNonQueryAsync();
        }

        await using var fanOut = new NpgsqlCommand("SELECT trigger_events.fan_out()", connection, transaction);
        var made = (long)(await fanOut.ExecuteScalarAsync())!;
        // This transaction's calls so far, counted by the server.
        await using var calls = new NpgsqlCommand("""
            SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_xact_user_functions
            WHERE schemaname = 'trigger_events' AND funcname = 'order_key'
            """, connection, transaction);
        var keyCalls = (long)(await calls.ExecuteScalarAsync())!;

        Assert.That(made, Is.EqualTo(50));
        Assert.That(keyCalls, Is.EqualTo(50), "order_key() once for each delivery of the ordered subscription");
    }

    [Test]
    public async Task Each_keys_undelivered_events_are_claimed_as_one_run_in_order_and_the_rest_of_a_run_behind_a_retry_waits_for_it()
    {
        // Keys 1, 2, 3, each with an INSERT and two UPDATEs, interleaved in the log.
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0), (2, 0), (3, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        await database.ExecuteAsync("UPDATE orders SET amount = 2");
        await database.FanOutAsync();
        var owner = Guid.NewGuid();

        var first = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        var again = await ClaimIdsAsync(Guid.NewGuid());

        Assert.That(Heads(first), Is.EqualTo(new long[] { 1, 2, 3 }), "the INSERT of each key goes first");
        Assert.That(Runs(first), Is.EqualTo(new[] { new long[] { 1, 4, 7 }, new long[] { 2, 5, 8 }, new long[] { 3, 6, 9 } }), "each key's run, in commit order");
        Assert.That(again, Is.Empty, "every key is held by the first claim");

        // Key 1 delivered to its end; key 2's head to be retried and its run given back; key 3 still in flight.
        var byId = first.ToDictionary(c => c.Event.Id);
        await store.RecordAsync(owner,
            [Result(byId[1], DeliveryResultKind.Delivered), Result(byId[4], DeliveryResultKind.Delivered), Result(byId[7], DeliveryResultKind.Delivered),
             Result(byId[2], DeliveryResultKind.Retry)], false, CancellationToken.None);
        await GiveBackAsync(owner, [byId[5], byId[8]]);

        Assert.That(await database.ScalarAsync<string>("SELECT string_agg(status || ':' || attempts, ' ' ORDER BY event_id) FROM trigger_events.deliveries WHERE event_id IN (5, 8)"),
            Is.EqualTo("pending:0 pending:0"), "given back unsent, their attempts uncounted");
        Assert.That(await ClaimIdsAsync(Guid.NewGuid()), Is.Empty, "key 2 waits for its retry, key 3 for its run");
    }

    [Test]
    public async Task An_expired_run_is_taken_over_whole_by_one_claimer_from_its_first_delivery()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0), (2, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        await database.FanOutAsync();
        var crashed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, TimeSpan.FromMilliseconds(1), CancellationToken.None);
        Assert.That(Runs(crashed), Is.EqualTo(new[] { new long[] { 1, 3 }, new long[] { 2, 4 } }));
        await Task.Delay(50);

        // One expired lease a claim, with its key's run (ClaimProtocol: it is sent alone).
        var rescuer = Guid.NewGuid();
        var first = await store.ClaimAsync(subscriptionId, rescuer, 100, Lease, CancellationToken.None);
        var second = await store.ClaimAsync(subscriptionId, rescuer, 100, Lease, CancellationToken.None);
        var takenOver = first.Concat(second).ToList();

        Assert.That((Runs(first).Count, Runs(second).Count), Is.EqualTo((1, 1)), "one run a claim");
        Assert.That(Runs(takenOver), Is.EqualTo(new[] { new long[] { 1, 3 }, new long[] { 2, 4 } }), "each key's run, from its first, in order");
        Assert.That(takenOver.All(c => c.TookOverExpiredLease && c.Attempt == 2), Is.True);
        Assert.That(await ClaimIdsAsync(Guid.NewGuid()), Is.Empty);
    }

    [TestCase("rate_per_second = 1000", new long[] { 1, 2 }, TestName = "A rate-limited subscription claims each key's first alone")]
    [TestCase("batch_max_events = 3, batch_max_wait = '0'", new long[] { 1, 2 }, TestName = "A batched subscription claims each key's first alone")]
    [TestCase("circuit = 'half_open'", new long[] { 1 }, TestName = "A half-open circuit's probe is one delivery, not a run")]
    public async Task Where_runs_do_not_apply_a_claim_takes_no_followers(string setting, long[] expected)
    {
        await database.ExecuteAsync($"UPDATE trigger_events.subscriptions SET {setting} WHERE id = $1", subscriptionId);
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0), (2, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        await database.FanOutAsync();

        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);

        Assert.That(claimed.Select(c => c.Event.Id).Order(), Is.EqualTo(expected), "the first of each key only");
        Assert.That(claimed.Select(c => c.RunId), Is.All.Null);
    }

    [Test]
    public async Task A_keys_run_is_one_request_of_max_in_flight()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 1 WHERE id = $1", subscriptionId);
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0), (2, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        await database.ExecuteAsync("UPDATE orders SET amount = 2");
        await database.FanOutAsync();
        var owner = Guid.NewGuid();

        var first = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        Assert.That(Runs(first), Is.EqualTo(new[] { new long[] { 1, 3, 5 } }), "one request's worth: key 1's run");
        Assert.That(await ClaimIdsAsync(Guid.NewGuid()), Is.Empty, "key 1's run is the one request in flight");

        await store.RecordAsync(owner, [.. first.Select(c => Result(c, DeliveryResultKind.Delivered))], false, CancellationToken.None);
        var second = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);
        Assert.That(Runs(second), Is.EqualTo(new[] { new long[] { 2, 4, 6 } }));
    }

    [Test]
    public async Task A_key_whose_run_another_transaction_holds_a_lock_in_sends_its_first_alone()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        await database.ExecuteAsync("UPDATE orders SET amount = 2");
        await database.FanOutAsync();
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var lockSecond = new NpgsqlCommand("SELECT FROM trigger_events.deliveries WHERE event_id = 2 FOR UPDATE", connection, transaction))
        {
            await lockSecond.ExecuteNonQueryAsync();
        }

        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);

        Assert.That(claimed.Select(c => c.Event.Id), Is.EqualTo(new long[] { 1 }), "event 3 must not go before event 2");
        Assert.That(claimed.Single().RunId, Is.Null, "a run of one is a single delivery");
    }

    [Test]
    public async Task A_dead_event_lets_its_key_continue_and_a_dead_retry_comes_after_the_later_events_of_its_key()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        await database.ExecuteAsync("UPDATE orders SET amount = 2");
        await database.FanOutAsync();
        var owner = Guid.NewGuid();
        var run = (await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None)).OrderBy(c => c.Event.Id).ToList();
        Assert.That(run.Select(c => c.Event.Id), Is.EqualTo(new long[] { 1, 2, 3 }));

        // The head is dead: the run goes on with event 2 (DeliveryAttempts.DeliverRunAsync).
        await store.RecordAsync(owner, [Result(run[0], DeliveryResultKind.Dead)], false, CancellationToken.None);

        // Retried while event 2 is in flight and 3 waits: it goes behind both.
        await DeadLetters.RetryAsync(database.DataSource, new DeliveryFilter(EventId: 1), null, CancellationToken.None);
        Assert.That(await ClaimIdsAsync(owner), Is.Empty, "events 2 and 3 are still held");
        await store.RecordAsync(owner, [Result(run[1], DeliveryResultKind.Delivered)], false, CancellationToken.None);
        Assert.That(await ClaimIdsAsync(owner), Is.Empty, "event 3 is still held");
        await store.RecordAsync(owner, [Result(run[2], DeliveryResultKind.Delivered)], false, CancellationToken.None);
        Assert.That(await ClaimIdsAsync(owner), Is.EqualTo(new long[] { 1 }), "the retried dead letter comes last");
    }

    [Test]
    public async Task An_update_belongs_to_its_new_rows_key_a_delete_to_its_old_rows_and_a_manual_event_to_none()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET ordering_key = '{customer}' WHERE id = $1", subscriptionId);
        await database.ExecuteAsync("INSERT INTO orders VALUES (1, 10, 0)");
        await database.ExecuteAsync("INSERT INTO orders VALUES (2, 20, 0)");
        await database.ExecuteAsync("UPDATE orders SET customer = 20 WHERE id = 1");
        await database.ExecuteAsync("DELETE FROM orders WHERE id = 2");
        await database.ScalarAsync<long>("SELECT trigger_events.invoke('orders_changed', '{\"customer\": 20}')");
        await database.ScalarAsync<long>("SELECT trigger_events.invoke('orders_changed', '{\"customer\": 20}')");
        await database.FanOutAsync();

        var keys = await database.ScalarAsync<string>(
            "SELECT string_agg(coalesce(d.order_key::text, '-') || ':' || e.op, ' ' ORDER BY e.id) FROM trigger_events.deliveries d JOIN trigger_events.event_log e ON e.id = d.event_id");
        var parts = keys.Split(' ').Select(p => p.Split(':')).ToList();
        Assert.That(parts.Select(p => p[1]), Is.EqualTo(new[] { "INSERT", "INSERT", "UPDATE", "DELETE", "MANUAL", "MANUAL" }));
        Assert.That(parts[2][0], Is.EqualTo(parts[1][0]).And.Not.EqualTo(parts[0][0]), "the UPDATE moved the row to customer 20");
        Assert.That(parts[3][0], Is.EqualTo(parts[1][0]), "the DELETE of a customer-20 row");
        Assert.That(parts[4][0], Is.EqualTo("-"), "a MANUAL event has no key");

        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);
        Assert.That(Heads(claimed), Is.EqualTo(new long[] { 1, 2, 5, 6 }), "the head of each key, and every MANUAL event at once");
        Assert.That(Runs(claimed), Is.EqualTo(new[] { new long[] { 2, 3, 4 } }), "customer 20: its INSERT, the UPDATE that moved row 1 to it, the DELETE");
    }

    [Test]
    public async Task A_key_blocked_at_the_head_of_the_queue_does_not_keep_the_claim_from_thousands_of_other_keys()
    {
        // Key 1: 3,000 events waiting behind one in flight; then 2,000 keys with one event each.
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await database.FanOutAsync();
        var owner = Guid.NewGuid();
        Assert.That(await ClaimIdsAsync(owner), Is.EqualTo(new long[] { 1 }));
        for (var i = 0; i < 3; i++)
        {
            await database.ExecuteAsync("DO $$ BEGIN FOR i IN 1..1000 LOOP UPDATE orders SET amount = amount + 1 WHERE id = 1; END LOOP; END $$");
        }

        await database.ExecuteAsync("INSERT INTO orders (id, amount) SELECT g, 0 FROM generate_series(2, 2001) g");
        await database.FanOutAsync();
        await database.FanOutAsync();
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.deliveries");

        var claimed = await ClaimIdsAsync(Guid.NewGuid(), limit: 500);

        Assert.That(claimed, Has.Count.EqualTo(500), "a full claim of other keys");
        Assert.That(claimed.Min(), Is.GreaterThan(3001), "none of the blocked key");
        Assert.That(claimed, Is.Ordered, "in queue order");
    }

    [Test]
    public async Task An_ordered_claim_checks_each_candidate_with_one_probe_of_the_key_index()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) SELECT g, 0 FROM generate_series(1, 20000) g");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        await database.FanOutAsync();
        await database.FanOutAsync();
        await database.FanOutAsync();
        await database.FanOutAsync();

        var plan = await ClaimPlanAsync();

        Assert.That(plan, Has.Some.Contains("Index Only Scan using deliveries_key_order").Or.Some.Contains("Index Scan using deliveries_key_order"), string.Join('\n', plan));
        Assert.That(plan, Has.Some.Contains("Index Scan using deliveries_pending"), string.Join('\n', plan));
        Assert.That(plan, Has.None.Contains("Seq Scan on deliveries").And.None.Contains("Bitmap"), string.Join('\n', plan));
        Assert.That(ClaimPlans.SortsOverTables(plan), Is.Empty, string.Join('\n', plan));
    }

    [Test]
    public async Task A_claim_behind_a_busy_key_probes_each_waiting_event_once_however_many_of_the_key_finished()
    {
        // The finished deliveries' entries stay in deliveries_key_order until a vacuum, which
        // must not come in between here.
        await database.ExecuteAsync("ALTER TABLE trigger_events.deliveries SET (autovacuum_enabled = false)");
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await database.ExecuteAsync("DO $$ BEGIN FOR i IN 1..2200 LOOP UPDATE orders SET amount = amount + 1 WHERE id = 1; END LOOP; END $$");
        await database.FanOutAsync();
        var keyEvents = $"SELECT event_id FROM trigger_events.deliveries WHERE subscription_id = {subscriptionId} ORDER BY order_seq, event_id";
        await database.ExecuteAsync($"""
            UPDATE trigger_events.deliveries SET status = 'delivered', attempts = 1, delivered_at = now()
            WHERE subscription_id = {subscriptionId} AND event_id IN ({keyEvents} LIMIT 2000)
            """);
        await database.ExecuteAsync($"""
            UPDATE trigger_events.deliveries SET status = 'in_flight', attempts = 1, lease_owner = gen_random_uuid(), next_attempt_at = now() + interval '1 hour'
            WHERE subscription_id = {subscriptionId} AND event_id IN ({keyEvents} OFFSET 2000 LIMIT 1)
            """);

        var plan = await ClaimPlanAsync(analyze: true);

        // The 200 waiting events are each checked for an earlier unfinished one of their key:
        // the probe finds the one just before, not the 2,000 finished before that.
        var probe = plan.FindIndex(l => l.Contains("using deliveries_key_order", StringComparison.Ordinal) && l.Contains("loops=", StringComparison.Ordinal)
                                        && !l.Contains("never executed", StringComparison.Ordinal) && PlanNumber(l, "loops") >= 200);
        Assert.That(probe, Is.GreaterThanOrEqualTo(0), string.Join('\n', plan));
        var fetches = plan.Skip(probe + 1).First(l => l.TrimStart().StartsWith("Heap Fetches:", StringComparison.Ordinal));
        Assert.That(int.Parse(fetches.Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture), Is.LessThanOrEqualTo(2 * PlanNumber(plan[probe], "loops")),
            string.Join('\n', plan));
    }

    /// <summary>A figure of an EXPLAIN ANALYZE node, such as its <c>loops</c>.</summary>
    private static int PlanNumber(string node, string name) =>
        int.Parse(System.Text.RegularExpressions.Regex.Match(node, $@"{name}=(\d+)\)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    [Test]
    public async Task A_result_write_hands_the_key_on_to_its_next_event_by_index()
    {
        // The planner settings the write runs with (DeliveryStore's pinned plan).
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using (var settings = new Npgsql.NpgsqlCommand(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off; SET enable_hashjoin = off; SET enable_mergejoin = off", connection))
        {
            await settings.ExecuteNonQueryAsync();
        }

        var plan = await GenericPlan.ExplainAsync(connection, KeyOrdering.HandOffSql, ("int[]", $"'{{{subscriptionId}}}'"), ("bigint[]", "'{1}'"));

        Assert.That(plan, Has.Some.Contains("deliveries_key_order"), string.Join('\n', plan));
        Assert.That(plan, Has.None.Contains("Seq Scan on deliveries").And.None.Contains("deliveries_pending"), string.Join('\n', plan));
    }

    [Test]
    public async Task Events_of_one_key_in_one_transaction_keep_their_capture_order()
    {
        await database.ExecuteAsync("""
            DO $$ BEGIN
                INSERT INTO orders (id, amount) VALUES (1, 0);
                UPDATE orders SET amount = 1 WHERE id = 1;
                UPDATE orders SET amount = 2 WHERE id = 1;
            END $$
            """);
        await database.FanOutAsync();
        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);

        Assert.That(Runs(claimed), Is.EqualTo(new[] { new long[] { 1, 2, 3 } }));
    }

    [Test]
    public async Task Deliveries_of_a_fan_out_batch_given_in_chunks_wait_until_the_whole_batch_is_made()
    {
        // One batch of five events in chunks of two: a later chunk may hold an earlier event of a key.
        for (var id = 1; id <= 5; id++)
        {
            await database.ExecuteAsync($"INSERT INTO orders (id, amount) VALUES ({id}, 0)");
        }

        // Claims without a fan-out of their own, which would finish the batch first.
        async Task<IEnumerable<long>> ClaimOnlyAsync() =>
            (await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, ClaimCursor.Sweep, takeOverExpired: true, CancellationToken.None))
                .Deliveries.Select(c => c.Event.Id);

        await database.ScalarAsync<long>("SELECT trigger_events.fan_out(NULL, 2)");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries"), Is.EqualTo(2));
        Assert.That(await ClaimOnlyAsync(), Is.Empty, "the batch is still being fanned out");

        await database.ScalarAsync<long>("SELECT trigger_events.fan_out(NULL, 2)");
        Assert.That(await ClaimOnlyAsync(), Is.Empty, "the batch is still being fanned out");
        await database.ScalarAsync<long>("SELECT trigger_events.fan_out(NULL, 2)");
        Assert.That(await ClaimOnlyAsync(), Is.EqualTo(new long[] { 1, 2, 3, 4, 5 }));
        Assert.That(await database.ScalarAsync<long>("SELECT count(DISTINCT order_seq) FROM trigger_events.deliveries"), Is.EqualTo(1), "one batch, one number");
    }

    [Test]
    public async Task A_replay_to_an_ordered_subscription_delivers_each_key_in_order_again()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0), (2, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");

        await Replay.RunAsync(database.DataSource, "hook", null, DateTimeOffset.MinValue.AddYears(1), null, null, null, CancellationToken.None);

        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE order_key IS NOT NULL AND order_seq IS NOT NULL"), Is.EqualTo(4));
        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);
        Assert.That(Heads(claimed), Is.EqualTo(new long[] { 1, 2 }), "the first event of each key");
        Assert.That(Runs(claimed), Is.EqualTo(new[] { new long[] { 1, 3 }, new long[] { 2, 4 } }));
    }

    [Test]
    public async Task A_replay_of_events_the_subscription_has_not_reached_leaves_them_to_its_fan_out_in_order()
    {
        // Key 1: events 1 and 2, neither fanned out yet (the subscription paused, or behind).
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1 WHERE id = 1");

        var replayed = await Replay.RunAsync(database.DataSource, "hook", null, DateTimeOffset.MinValue.AddYears(1), null, 2, null, CancellationToken.None);
        await database.FanOutAsync();

        Assert.That(replayed.Scheduled, Is.Zero, "the fan-out delivers it anyway");
        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);
        Assert.That(Heads(claimed), Is.EqualTo(new long[] { 1 }), "the key's first event goes first");
        Assert.That(Runs(claimed), Is.EqualTo(new[] { new long[] { 1, 2 } }));
    }

    [Test]
    public async Task A_replayed_delivery_still_waiting_keeps_its_place_in_its_key()
    {
        // Key 1: events 1, 2, 3. Event 1 delivered and its key handed on: 2 due, 3 parked.
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1 WHERE id = 1");
        await database.ExecuteAsync("UPDATE orders SET amount = 2 WHERE id = 1");
        await ParkingFanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered' WHERE event_id = 1");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() WHERE event_id = 2");
        Assert.That(await StatesAsync(), Is.EqualTo("1:delivered 2:due 3:parked"));

        // Each of the waiting ones replayed on its own, the later one first.
        foreach (var eventId in new long[] { 3, 2 })
        {
            await Replay.RunAsync(database.DataSource, "hook", null, DateTimeOffset.MinValue.AddYears(1), null, eventId, null, CancellationToken.None);
        }

        Assert.That(await StatesAsync(), Is.EqualTo("1:delivered 2:due 3:parked"), "the parked one is still behind its key's head");
        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);
        Assert.That(Runs(claimed), Is.EqualTo(new[] { new long[] { 2, 3 } }), "the key's order kept");
    }

    [Test]
    public async Task A_new_ordered_subscription_starting_from_the_earliest_event_gets_its_keys_in_log_order()
    {
        await database.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0), (2, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        var registered = await new SubscriptionRegistry(database.DataSource).SyncAsync("default",
        [
            new SubscriptionConfig
            {
                Name = "from-earliest",
                Trigger = "orders_changed",
                StartFrom = new StartFrom.Earliest(),
                Webhook = new WebhookConfig { Url = new Uri("http://127.0.0.1:9/hook") },
                Ordering = OrderingConfig.PrimaryKey,
            },
        ], CancellationToken.None);
        var id = registered.Single().Id;

        var claimed = await store.ClaimAsync(id, Guid.NewGuid(), 100, Lease, CancellationToken.None);

        Assert.That(registered.Single().Backfilled, Is.EqualTo(4));
        Assert.That(Heads(claimed), Is.EqualTo(new long[] { 1, 2 }), "the first event of each key");
        Assert.That(Runs(claimed), Is.EqualTo(new[] { new long[] { 1, 3 }, new long[] { 2, 4 } }));
    }

    /// <summary>The claim's plan under the claim transaction's own settings; with <paramref name="analyze"/>, as it ran.</summary>
    private async Task<List<string>> ClaimPlanAsync(bool analyze = false)
    {
        await using var batch = database.DataSource.CreateBatch();
        var lockSubscription = new Npgsql.NpgsqlBatchCommand(DeliveryStore.LockSubscriptionSql);
        lockSubscription.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = subscriptionId });
        // The database's clock, as in production.
        lockSubscription.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset?> { TypedValue = null, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
        batch.BatchCommands.Add(lockSubscription);
        var explain = new Npgsql.NpgsqlBatchCommand((analyze ? "EXPLAIN (ANALYZE, BUFFERS) " : "EXPLAIN ") + DeliveryStore.ClaimSql);
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = subscriptionId });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<Guid> { TypedValue = Guid.NewGuid() });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = 100 });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<TimeSpan> { TypedValue = Lease, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Interval });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset> { TypedValue = ClaimCursor.Sweep.DueAt });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<long> { TypedValue = ClaimCursor.Sweep.EventId });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<bool> { TypedValue = true });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset> { TypedValue = ClaimCursor.Sweep.ClaimedAt });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = DeliveryStore.InlineEventBytes });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = 100 });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset?> { TypedValue = null, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
        batch.BatchCommands.Add(explain);
        await using var reader = await batch.ExecuteReaderAsync();
        await reader.NextResultAsync();
        var plan = new List<string>();
        while (await reader.ReadAsync())
        {
            plan.Add(reader.GetString(0));
        }

        return plan;
    }
}
