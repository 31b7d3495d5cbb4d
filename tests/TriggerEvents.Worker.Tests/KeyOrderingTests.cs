using System.Collections.Concurrent;
using System.Text.Json;
using Npgsql;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// <c>ordering: key</c> end to end with the real executable (SPEC "Ordering"): per key, commit
/// order and one event in flight across all replicas; a failing key holds back only itself.
/// </summary>
public sealed class KeyOrderingTests
{
    private const string ByPrimaryKey = "ordering: key";
    private const string ByCustomer = "ordering: key\nordering_key: [customer]";

    [Test]
    public async Task A_failing_key_holds_back_only_its_own_later_events_while_other_keys_flow()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var keys = new KeyLog(scenario.Receiver, OrderId);
        var options = new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey, RetryInitialInterval = "200ms", RetryMaxInterval = "500ms", MaxAttempts = 100 };
        await scenario.StartWorkerAsync(options);

        // Key 3's first event (its INSERT) fails until every event of the other keys has been
        // delivered (and at least twice), then succeeds. Told by its body: the worker may send
        // it before its id could be read here.
        var failures = 0;
        var othersDelivered = new TaskCompletionSource();
        keys.Answer = request =>
        {
            if (keys.KeyOf(request) == "3" && OperationOf(request) == "INSERT"
                && (!othersDelivered.Task.IsCompleted || Volatile.Read(ref failures) < 2))
            {
                Interlocked.Increment(ref failures);
                return new ReceiverResponse(500);
            }

            return new ReceiverResponse(200, TimeSpan.FromMilliseconds(5));
        };

        // Five keys, four events each, interleaved: one INSERT statement, then three UPDATEs of all.
        await scenario.ExecuteAsync("INSERT INTO orders (id, amount) SELECT g, 0 FROM generate_series(1, 5) g");
        for (var round = 1; round <= 3; round++)
        {
            await scenario.ExecuteAsync($"UPDATE orders SET amount = {round}");
        }

        var failingHead = await scenario.ScalarAsync<long>("SELECT id FROM trigger_events.event_log WHERE op = 'INSERT' AND (new_data->>'id')::int = 3");
        var captured = await scenario.CapturedEventIdsAsync();
        var ofOtherKeys = (await EventsOfKeysAsync(scenario, "(new_data->>'id')::int <> 3")).ToHashSet();
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().IsSupersetOf(ofOtherKeys), TimeSpan.FromSeconds(60), "the other keys' events");
        var key3ArrivedMeanwhile = keys.Arrivals.Where(a => a.Key == "3").Select(a => a.EventId).Distinct().ToList();
        othersDelivered.SetResult();
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));

        Assert.That(captured, Has.Count.EqualTo(20));
        Assert.That(key3ArrivedMeanwhile, Is.EqualTo(new[] { failingHead }), "while its first event failed, key 3 sent nothing else");
        Assert.That(failures, Is.GreaterThanOrEqualTo(2));
        keys.AssertInCommitOrderOneAtATime(await EventsByKeyAsync(scenario, OrderKeySql));
    }

    [Test]
    public async Task Once_its_event_is_dead_a_key_continues_and_dead_retry_sends_that_event_after_the_later_ones()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var keys = new KeyLog(scenario.Receiver, OrderId);
        await scenario.StartWorkerAsync(new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey, MaxAttempts = 2, RetryInitialInterval = "100ms", RetryMaxInterval = "200ms" });

        // Order 1's INSERT fails until it has been dead-lettered and retried by hand.
        var retried = false;
        keys.Answer = request => keys.Arrivals.First().EventId == request.EventId && !Volatile.Read(ref retried)
            ? new ReceiverResponse(500)
            : ReceiverResponse.Ok;
        await scenario.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (1, 0)");
        await scenario.ExecuteAsync("UPDATE orders SET amount = 1 WHERE id = 1");
        await scenario.ExecuteAsync("UPDATE orders SET amount = 2 WHERE id = 1");
        var events = (await EventsOfKeysAsync(scenario, "true")).ToArray();
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().IsSupersetOf(events[1..]), TimeSpan.FromSeconds(60), "the key's later events");
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered'") == 2,
            TimeSpan.FromSeconds(30), "the later events recorded");

        Volatile.Write(ref retried, true);
        var retry = await WorkerProcess.RunToEndAsync(
            new Dictionary<string, string?> { ["TRIGGER_EVENTS_DATABASE_URL"] = scenario.WorkerConnectionString }, "dead", "retry", "--subscription", "orders-hook");
        Assert.That(retry.ExitCode, Is.Zero, retry.Error);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));

        Assert.That(keys.Arrivals.Select(a => a.EventId), Is.EqualTo(new[] { events[0], events[0], events[1], events[2], events[0] }),
            "two failed attempts, the key continuing, then the retried dead letter");
        Assert.That(keys.MaxInFlightOfAnyKey, Is.EqualTo(1));
    }

    [TestCase(2)]
    [TestCase(4)]
    public async Task Replicas_never_have_two_events_of_a_key_in_flight_and_keep_each_keys_order(int replicas)
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var keys = new KeyLog(scenario.Receiver, OrderId)
        {
            Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(Random.Shared.Next(0, 8))),
        };
        var options = new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey, MaxInFlight = 32, Concurrency = 32, BatchSize = 50 };
        await Task.WhenAll(Enumerable.Range(0, replicas).Select(_ => scenario.StartWorkerAsync(options)));

        // 20 keys; three writers update random keys, one row per transaction, while the replicas deliver.
        await scenario.ExecuteAsync("INSERT INTO orders (id, amount) SELECT g, 0 FROM generate_series(1, 20) g");
        await Task.WhenAll(Enumerable.Range(0, 3).Select(writer => Task.Run(async () =>
        {
            var random = new Random(writer);
            await using var connection = await scenario.DataSource.OpenConnectionAsync();
            for (var i = 0; i < 150; i++)
            {
                await using var command = new NpgsqlCommand($"UPDATE orders SET amount = amount + 1 WHERE id = {random.Next(1, 21)}", connection);
                await command.ExecuteNonQueryAsync();
            }
        })));

        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromMinutes(3));

        Assert.That(await scenario.CapturedEventIdsAsync(), Has.Count.EqualTo(470));
        keys.AssertInCommitOrderOneAtATime(await EventsByKeyAsync(scenario, OrderKeySql));
        Assert.That(scenario.Receiver.Inner.DuplicateDeliveries, Is.Zero, "duplicates");
        Assert.That(scenario.Receiver.MaxOpen, Is.GreaterThan(1), "keys were delivered concurrently");
        TestContext.Out.WriteLine($"{replicas} replicas: most open at once {scenario.Receiver.MaxOpen}; {await scenario.SummaryAsync()}");
    }

    [Test]
    public async Task Two_replicas_share_a_busy_key_whose_runs_are_taken_on_one_request_at_a_time_in_commit_order()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var keys = new KeyLog(scenario.Receiver, OrderId)
        {
            Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(Random.Shared.Next(0, 3))),
        };
        // A claim's share of a key is its first and three followers per request of the batch
        // size: 31 here, a run busy enough to be taken on.
        var options = new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey, MaxInFlight = 8, Concurrency = 8, BatchSize = 10 };
        await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => scenario.StartWorkerAsync(options)));

        // Key 1: 300 events in one transaction, then 300 more, one per transaction, while the
        // replicas deliver (each taking the key on meets deliveries the fan-out is parking); key 2
        // beside it, quieter.
        await scenario.ExecuteAsync("BEGIN; INSERT INTO orders (id, amount) VALUES (1, 0), (2, 0);\n"
            + string.Concat(Enumerable.Repeat("UPDATE orders SET amount = amount + 1 WHERE id = 1;\n", 299)) + "COMMIT;");
        await using (var connection = await scenario.DataSource.OpenConnectionAsync())
        {
            for (var i = 0; i < 300; i++)
            {
                await using var command = new NpgsqlCommand($"UPDATE orders SET amount = amount + 1 WHERE id = {(i % 10 == 0 ? 2 : 1)}", connection);
                await command.ExecuteNonQueryAsync();
            }
        }

        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromMinutes(3));

        Assert.That(await scenario.CapturedEventIdsAsync(), Has.Count.EqualTo(601));
        keys.AssertInCommitOrderOneAtATime(await EventsByKeyAsync(scenario, OrderKeySql));
        Assert.That(scenario.Receiver.Inner.DuplicateDeliveries, Is.Zero, "duplicates");
        TestContext.Out.WriteLine(await scenario.SummaryAsync());
    }

    [Test]
    public async Task A_keys_run_is_recorded_in_a_few_writes_not_one_every_few_requests()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var keys = new KeyLog(scenario.Receiver, OrderId);
        await scenario.StartWorkerAsync(new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey });

        // Key 1: an INSERT and 99 UPDATEs in one transaction, sent as a run, answered at once.
        await scenario.ExecuteAsync("""
            BEGIN;
            INSERT INTO orders (id, amount) VALUES (1, 0);
            """ + string.Concat(Enumerable.Repeat("UPDATE orders SET amount = amount + 1 WHERE id = 1;\n", 99)) + "COMMIT;");
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));

        // Each result write stamps the rows it finishes with its transaction's time.
        var writes = await scenario.ScalarAsync<long>("SELECT count(DISTINCT updated_at) FROM trigger_events.deliveries WHERE status = 'delivered'");
        Assert.That(writes, Is.LessThanOrEqualTo(10), "the results of a run wait for the run's later ones");
        keys.AssertInCommitOrderOneAtATime(await EventsByKeyAsync(scenario, OrderKeySql));
        TestContext.Out.WriteLine($"100 events of one key recorded in {writes} writes");
    }

    [Test]
    public async Task An_event_of_another_key_goes_out_at_once_while_a_keys_run_is_in_flight()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var keys = new KeyLog(scenario.Receiver, OrderId);
        // Polling would take half a minute: only a wake-up can send key 2's event sooner.
        var options = new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey, PollInterval = "30s", Lease = "60s" };
        var firstOfKey1 = new TaskCompletionSource();
        keys.Answer = request =>
        {
            firstOfKey1.TrySetResult();
            return new ReceiverResponse(200, TimeSpan.FromMilliseconds(50));
        };
        await scenario.StartWorkerAsync(options);

        // Key 1: an INSERT and 40 UPDATEs, one run sent one request at a time, each answered
        // after 50 ms; the worker is then waiting, with the run in flight.
        await scenario.ExecuteAsync("""
            BEGIN;
            INSERT INTO orders (id, amount) VALUES (1, 0);
            UPDATE orders SET amount = amount + 1 WHERE id = 1;
            """ + string.Concat(Enumerable.Repeat("UPDATE orders SET amount = amount + 1 WHERE id = 1;\n", 39)) + "COMMIT;");
        await firstOfKey1.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await Task.Delay(200);

        var committed = DateTime.UtcNow;
        await scenario.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (2, 0)");
        var key2 = await EventsOfKeysAsync(scenario, "(new_data->>'id')::int = 2");
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().IsSupersetOf(key2), TimeSpan.FromSeconds(20), "key 2's event");
        var waited = DateTime.UtcNow - committed;
        var key1Sent = keys.Arrivals.Count(a => a.Key == "1");

        Assert.That(key1Sent, Is.LessThan(41), "key 1's run was still in flight when key 2's event arrived");
        Assert.That(waited, Is.LessThan(TimeSpan.FromSeconds(5)), "key 2's event waited for a poll, not a wake-up");
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));
        keys.AssertInCommitOrderOneAtATime(await EventsByKeyAsync(scenario, OrderKeySql));
        TestContext.Out.WriteLine($"key 2's event arrived {waited.TotalMilliseconds:F0} ms after its commit, with {key1Sent} of key 1's 41 sent");
    }

    [TestCase(1)]
    [TestCase(2)]
    public async Task A_transaction_larger_than_a_fan_out_is_delivered_without_waiting_a_poll_per_chunk(int replicas)
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var keys = new KeyLog(scenario.Receiver, OrderId);
        // A fan-out makes 4 x batch_size = 40 deliveries a round: 200 events of one transaction
        // take six rounds, and the ordered subscription can take none of them before the last.
        // Each round waiting for a poll would take 25 s. With two replicas, a round that finds the
        // batch's places locked by the other passes them by, and whichever made the chunk goes on.
        var options = new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey, BatchSize = 10, PollInterval = "5s" };
        await Task.WhenAll(Enumerable.Range(0, replicas).Select(_ => scenario.StartWorkerAsync(options)));
        // Idle and asking for a wake-up, as the test's chunks are its subject: a transaction that
        // captures before a worker's first rounds have asked and commits after its last look
        // waits for the poll (README, "NOTIFY is a hint").
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<bool>("SELECT idle FROM trigger_events.worker_signal"), TimeSpan.FromSeconds(30), "an idle worker");

        var committed = DateTime.UtcNow;
        await scenario.ExecuteAsync("INSERT INTO orders (id, amount) SELECT g, 0 FROM generate_series(1, 200) g");
        // Timed to the last event's first claim, read from the database: chunks and the claims
        // behind them are the subject. A request the receiver (this test process, busy with other
        // tests) answered late would hold one slot, not the claims of the rest.
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE attempts > 0") == 200,
            TimeSpan.FromSeconds(60), "every event claimed");
        var waited = DateTime.UtcNow - committed;
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));
        var delivered = DateTime.UtcNow - committed;

        Assert.That(await scenario.CapturedEventIdsAsync(), Has.Count.EqualTo(200));
        var retried = await scenario.ScalarAsync<string>(
            "SELECT coalesce(string_agg(format('event %s: %s attempts, %s', event_id, attempts, last_error), '; '), 'none') FROM trigger_events.deliveries WHERE attempts > 1");
        Assert.That(
            waited, Is.LessThan(TimeSpan.FromSeconds(5)),
            $"the fan-out waited for polls between its chunks (all delivered after {delivered.TotalMilliseconds:F0} ms; retried: {retried})\n{scenario.WorkerOutput()}");
        keys.AssertInCommitOrderOneAtATime(await EventsByKeyAsync(scenario, OrderKeySql));
        Assert.That(scenario.Receiver.Inner.DuplicateDeliveries, Is.Zero, "duplicates");
        TestContext.Out.WriteLine(
            $"{replicas} replica(s): 200 events of one transaction claimed {waited.TotalMilliseconds:F0} ms and delivered {delivered.TotalMilliseconds:F0} ms after its commit; retried: {retried}");
    }

    [Test]
    public async Task A_worker_killed_mid_key_leaves_the_key_in_order_once_its_lease_is_taken_over()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var keys = new KeyLog(scenario.Receiver, OrderId) { Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(1500)) };
        // A lease well beyond the 1.5 s answers: on a loaded machine a request that started late
        // and a lease extension that ran late let a 4 s lease expire under a running request, and
        // the worker's own take-over then opened a second request of the key (at-least-once, but
        // not what this test is about: the kill).
        var options = new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey, Lease = "8s", WebhookTimeout = "3s" };
        var first = await scenario.StartWorkerAsync(options);
        await scenario.ExecuteAsync("INSERT INTO orders (id, amount) SELECT g, 0 FROM generate_series(1, 4) g");
        for (var round = 1; round <= 3; round++)
        {
            await scenario.ExecuteAsync($"UPDATE orders SET amount = {round}");
        }

        await scenario.Receiver.WaitUntilAsync(r => r.Arrivals.Count >= 6, TimeSpan.FromSeconds(60), "6 requests");
        // Killed mid-key, with the results of the keys' first events written: one killed between
        // an answer and its result's write sends that event again after the next one of its key
        // (README, "Ordering"), which is not what this test is about.
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered'") >= 4,
            TimeSpan.FromSeconds(30), "the results of the keys' first events");
        await first.KillAsync();
        await scenario.Receiver.WaitUntilAsync(r => r.Inner.Requests.Count == r.Arrivals.Count, TimeSpan.FromSeconds(30), "the killed worker's requests to end");
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'in_flight'"), Is.GreaterThan(0), "the kill left leases behind");

        keys.Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(5));
        await scenario.StartWorkerAsync(options);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(90));

        keys.AssertInCommitOrderOneAtATime(await EventsByKeyAsync(scenario, OrderKeySql));
    }

    [Test]
    public async Task A_delete_and_a_new_insert_of_the_same_key_are_delivered_in_commit_order()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var keys = new KeyLog(scenario.Receiver, OrderId) { Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(30)) };
        await scenario.StartWorkerAsync(new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey });

        await scenario.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (7, 1)");
        await scenario.ExecuteAsync("UPDATE orders SET amount = 2 WHERE id = 7");
        await scenario.ExecuteAsync("DELETE FROM orders WHERE id = 7");
        await scenario.ExecuteAsync("INSERT INTO orders (id, amount) VALUES (7, 3)");
        await scenario.ExecuteAsync("UPDATE orders SET amount = 4 WHERE id = 7");
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));

        Assert.That(keys.Arrivals.Select(a => a.Operation), Is.EqualTo(new[] { "INSERT", "UPDATE", "DELETE", "INSERT", "UPDATE" }));
        keys.AssertInCommitOrderOneAtATime(await EventsByKeyAsync(scenario, OrderKeySql));
    }

    [Test]
    public async Task An_update_that_changes_the_key_waits_behind_its_new_key()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        await scenario.ExecuteAsync("ALTER TABLE orders ADD COLUMN customer int");
        var keys = new KeyLog(scenario.Receiver, Customer);
        await scenario.StartWorkerAsync(new FaultWorkerOptions { SubscriptionYaml = ByCustomer, MaxAttempts = 100 });

        // Customer 20's first event fails until the row of customer 10 has moved to customer 20
        // and customer 10's own later event was delivered.
        var release = new TaskCompletionSource();
        keys.Answer = request => keys.KeyOf(request) == "20" && !release.Task.IsCompleted ? new ReceiverResponse(500) : ReceiverResponse.Ok;
        await scenario.ExecuteAsync("INSERT INTO orders (id, customer, amount) VALUES (1, 10, 0)");
        await scenario.ExecuteAsync("INSERT INTO orders (id, customer, amount) VALUES (2, 20, 0)");
        await scenario.ExecuteAsync("UPDATE orders SET customer = 20 WHERE id = 1");
        await scenario.ExecuteAsync("INSERT INTO orders (id, customer, amount) VALUES (3, 10, 0)");
        var moved = await scenario.ScalarAsync<long>("SELECT id FROM trigger_events.event_log WHERE op = 'UPDATE'");
        var lastOfTen = await scenario.ScalarAsync<long>("SELECT id FROM trigger_events.event_log WHERE (new_data->>'id')::int = 3");

        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Contains(lastOfTen), TimeSpan.FromSeconds(60), "customer 10's events");
        var movedBeforeRelease = scenario.Receiver.ArrivedEventIds().Contains(moved);
        release.SetResult();
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));

        Assert.That(movedBeforeRelease, Is.False, "the UPDATE to customer 20 was held back with customer 20's first event");
        keys.AssertInCommitOrderOneAtATime(await EventsByKeyAsync(scenario, CustomerKeySql));
    }

    [Test]
    public async Task A_key_that_is_not_the_primary_key_follows_commit_order_not_event_order()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        await scenario.ExecuteAsync("ALTER TABLE orders ADD COLUMN customer int");
        var keys = new KeyLog(scenario.Receiver, Customer);
        await scenario.StartWorkerAsync(new FaultWorkerOptions { SubscriptionYaml = ByCustomer, WebhookTimeout = "20s", Lease = "30s", ShutdownTimeout = "30s" });

        // T1 captures first (the lower event id) but commits after T2, both for customer 5.
        await using var connection = await scenario.DataSource.OpenConnectionAsync();
        var t1 = await connection.BeginTransactionAsync();
        await using (var insert = new NpgsqlCommand("INSERT INTO orders (id, customer, amount) VALUES (1, 5, 0)", connection, t1))
        {
            await insert.ExecuteNonQueryAsync();
        }

        // T2's request is held open until T1 has committed and been fanned out.
        var hold = new TaskCompletionSource();
        keys.Answer = request => request.EventId == keys.Arrivals.First().EventId && !hold.Task.IsCompleted
            ? new ReceiverResponse(200, Until: hold.Task)
            : ReceiverResponse.Ok;
        await scenario.ExecuteAsync("INSERT INTO orders (id, customer, amount) VALUES (2, 5, 0)");
        var t2Event = await scenario.ScalarAsync<long>("SELECT id FROM trigger_events.event_log WHERE (new_data->>'id')::int = 2");
        await scenario.Receiver.WaitUntilAsync(r => r.ArrivedEventIds().Contains(t2Event), TimeSpan.FromSeconds(60), "T2's event");
        await t1.CommitAsync();
        var t1Event = await scenario.ScalarAsync<long>("SELECT id FROM trigger_events.event_log WHERE (new_data->>'id')::int = 1");
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<long>($"SELECT count(*) FROM trigger_events.deliveries WHERE event_id = {t1Event}") == 1,
            TimeSpan.FromSeconds(30), "T1's delivery to be made");
        // Several claim rounds (poll interval 200 ms) in which T1's event must not be taken.
        await Task.Delay(TimeSpan.FromSeconds(1));
        var t1SentEarly = scenario.Receiver.ArrivedEventIds().Contains(t1Event);
        hold.SetResult();
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));

        Assert.That(t1Event, Is.LessThan(t2Event), "T1 captured first");
        Assert.That(t1SentEarly, Is.False, "T1 committed after T2: it waits for T2's delivery");
        Assert.That(keys.Arrivals.Select(a => a.EventId), Is.EqualTo(new[] { t2Event, t1Event }));
        Assert.That(keys.MaxInFlightOfAnyKey, Is.EqualTo(1));
    }

    [TestCase("ordering: key\nordering_key: [customer]", "", "ordering_key: 'customer' is not a column of orders")]
    [TestCase("ordering: key\nordering_key: [status]", ", payload_columns => '{id,amount}'", "ordering_key: 'status' is not among the payload_columns of trigger 'orders_changed', so events do not carry it")]
    [TestCase("ordering: key", ", payload_columns => '{amount}'", "the primary key column 'id' of orders is not among the payload_columns of trigger 'orders_changed'")]
    public async Task A_key_the_events_cannot_carry_is_refused_at_start_at_its_line(string yaml, string attachOptions, string message)
    {
        await using var scenario = await FaultScenario.CreateAsync(attachOptions);
        var (path, port) = scenario.WriteConfig(new FaultWorkerOptions { SubscriptionYaml = yaml });
        await using var worker = WorkerProcess.Start(scenario.WorkerConnectionString, path, port);
        await WaitForExitAndOutputAsync(worker, "subscription 'orders-hook'");

        Assert.That(worker.ExitCode, Is.EqualTo(2), worker.Output);
        Assert.That(worker.Output, Does.Match($@"{System.Text.RegularExpressions.Regex.Escape(path)}:1[0-9]:\d+: subscription 'orders-hook': {System.Text.RegularExpressions.Regex.Escape(message)}"));
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.subscriptions"), Is.Zero, "nothing was registered");
    }

    [Test]
    public async Task Ordering_by_the_primary_key_of_a_table_without_one_is_refused_at_start()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        await scenario.ExecuteAsync("ALTER TABLE orders DROP CONSTRAINT orders_pkey");
        var (path, port) = scenario.WriteConfig(new FaultWorkerOptions { SubscriptionYaml = ByPrimaryKey });
        await using var worker = WorkerProcess.Start(scenario.WorkerConnectionString, path, port);
        await WaitForExitAndOutputAsync(worker, "subscription 'orders-hook'");

        Assert.That(worker.ExitCode, Is.EqualTo(2), worker.Output);
        Assert.That(worker.Output, Does.Contain("ordering: key needs ordering_key, since table orders has no primary key"));
    }

    /// <summary>Waits for the process to exit and for its output to contain <paramref name="text"/> (the output is read apart from the exit).</summary>
    private static async Task WaitForExitAndOutputAsync(WorkerProcess worker, string text)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!worker.HasExited || !worker.Output.Contains(text, StringComparison.Ordinal))
        {
            if (deadline.IsCancellationRequested)
            {
                break;
            }

            await Task.Delay(50, CancellationToken.None);
        }
    }

    private const string OrderKeySql = "coalesce(new_data, old_data)->>'id'";
    private const string CustomerKeySql = "coalesce(new_data, old_data)->>'customer'";

    private static string OrderId(JsonElement body) => Row(body).GetProperty("id").ToString();

    private static string Customer(JsonElement body) => Row(body).GetProperty("customer").ToString();

    /// <summary>The row an event's key comes from: the new one, or the old one of a DELETE.</summary>
    private static JsonElement Row(JsonElement body)
    {
        var data = body.GetProperty("event").GetProperty("data");
        return data.GetProperty("new").ValueKind == JsonValueKind.Null ? data.GetProperty("old") : data.GetProperty("new");
    }

    private static string OperationOf(ReceivedRequest request)
    {
        using var json = JsonDocument.Parse(request.Body);
        return json.RootElement.GetProperty("event").GetProperty("op").GetString()!;
    }

    private static async Task<List<long>> EventsOfKeysAsync(FaultScenario scenario, string condition)
    {
        await using var command = scenario.DataSource.CreateCommand($"SELECT id FROM trigger_events.event_log WHERE {condition} ORDER BY id");
        await using var reader = await command.ExecuteReaderAsync();
        var ids = new List<long>();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetInt64(0));
        }

        return ids;
    }

    /// <summary>
    /// Each key's events in commit order. The writes of these tests to one key never overlap (a
    /// row lock, or one connection), so commit order is the order of the events' ids, except
    /// where a test commits out of it on purpose and checks that itself.
    /// </summary>
    private static async Task<Dictionary<string, List<long>>> EventsByKeyAsync(FaultScenario scenario, string keySql)
    {
        await using var command = scenario.DataSource.CreateCommand($"SELECT {keySql}, id FROM trigger_events.event_log ORDER BY id");
        await using var reader = await command.ExecuteReaderAsync();
        var byKey = new Dictionary<string, List<long>>();
        while (await reader.ReadAsync())
        {
            var key = reader.GetString(0);
            if (!byKey.TryGetValue(key, out var ids))
            {
                byKey[key] = ids = [];
            }

            ids.Add(reader.GetInt64(1));
        }

        return byKey;
    }

    /// <summary>The receiver's view by key: what arrived in which order, and how many of a key were open at once.</summary>
    private sealed class KeyLog
    {
        private readonly ConcurrentQueue<(string Key, long EventId, string Operation)> arrivals = new();
        private readonly ConcurrentDictionary<string, int> open = new();
        private readonly Func<JsonElement, string> key;
        private int maxInFlightOfAnyKey;

        public KeyLog(TrackingReceiver receiver, Func<JsonElement, string> key)
        {
            this.key = key;
            receiver.Answer = request =>
            {
                var k = KeyOf(request);
                var now = open.AddOrUpdate(k, 1, (_, n) => n + 1);
                lock (arrivals)
                {
                    maxInFlightOfAnyKey = Math.Max(maxInFlightOfAnyKey, now);
                }

                using (var json = JsonDocument.Parse(request.Body))
                {
                    arrivals.Enqueue((k, request.EventId!.Value, json.RootElement.GetProperty("event").GetProperty("op").GetString()!));
                }

                return Answer(request);
            };
            receiver.Answered = request => open.AddOrUpdate(KeyOf(request), 0, (_, n) => n - 1);
        }

        public Func<ReceivedRequest, ReceiverResponse> Answer { get; set; } = _ => ReceiverResponse.Ok;

        public IReadOnlyCollection<(string Key, long EventId, string Operation)> Arrivals => arrivals;

        public int MaxInFlightOfAnyKey
        {
            get
            {
                lock (arrivals)
                {
                    return maxInFlightOfAnyKey;
                }
            }
        }

        public string KeyOf(ReceivedRequest request)
        {
            using var json = JsonDocument.Parse(request.Body);
            return key(json.RootElement);
        }

        /// <summary>
        /// Per key: never two requests open at once, and the events arrived in commit order (an
        /// event may arrive again, a retry or a redelivery after a crash, but never after a later one).
        /// </summary>
        public void AssertInCommitOrderOneAtATime(Dictionary<string, List<long>> committed)
        {
            Assert.That(MaxInFlightOfAnyKey, Is.EqualTo(1), "requests of one key open at once");
            foreach (var (k, expected) in committed)
            {
                var sent = arrivals.Where(a => a.Key == k).Select(a => a.EventId).ToList();
                var firstArrivals = sent.Distinct().ToList();
                Assert.That(firstArrivals, Is.EqualTo(expected), $"key {k}: order of first arrival (all arrivals: {string.Join(", ", sent)})");
                for (var i = 1; i < sent.Count; i++)
                {
                    Assert.That(expected.IndexOf(sent[i]), Is.GreaterThanOrEqualTo(expected.IndexOf(sent[i - 1])),
                        $"key {k}: event {sent[i]} arrived after the later event {sent[i - 1]} (all arrivals: {string.Join(", ", sent)})");
                }
            }
        }
    }
}
