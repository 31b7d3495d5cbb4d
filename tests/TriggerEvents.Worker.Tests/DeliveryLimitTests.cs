using System.Globalization;
using System.Text.Json;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// What the worker holds is bounded by its configuration, not by the data (SPEC "Worker"): an
/// event over <c>max_event_bytes</c> is dead-lettered without being read, and 64 large
/// events in flight at once stay within a documented peak.
/// </summary>
public sealed class DeliveryLimitTests
{
    /// <summary>
    /// The peak resident memory (VmHWM) allowed to the native worker with the default
    /// <c>body_memory</c> (64 MiB) and <c>concurrency</c> (64), whatever its events: 96 MiB plus
    /// <c>body_memory</c> (README "Guarantees"), below the 256 MiB SPEC promises, which is the
    /// memory limit of deploy/kubernetes/deployment.yaml.
    /// </summary>
    private const long PeakBoundMiB = 160;

    /// <summary>
    /// What the JIT runtime adds when the tests run the managed build instead of the published
    /// native executable (a developer's loop; scripts/test.sh tests the native one).
    /// </summary>
    private const long JitRuntimeMiB = 64;

    [Test]
    public async Task An_event_over_max_event_bytes_and_one_deleted_by_hand_are_dead_with_their_reason_and_the_rest_is_delivered()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        await scenario.Database.ExecuteAsync("ALTER TABLE orders ADD COLUMN note text");
        var config = scenario.WriteConfig(subscriptionYaml: "max_event_bytes: 64KiB");
        var first = await scenario.StartWorkerAsync(config);
        Assert.That(await first.TerminateAsync(), Is.Zero);

        // With no worker running: six events, the fourth 100 KB, the fifth deleted from the log
        // by hand after its delivery was made.
        await scenario.InsertOrdersAsync(1, 3);
        await scenario.Database.ExecuteAsync("INSERT INTO orders (id, note) VALUES (4, repeat('x', 100000))");
        await scenario.InsertOrdersAsync(5, 6);
        await scenario.Database.FanOutAsync();
        var events = await scenario.CapturedEventIdsAsync();
        await scenario.Database.ExecuteAsync("DELETE FROM trigger_events.event_log WHERE id = $1", events[4]);

        var second = await scenario.StartWorkerAsync(config);
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 4, TimeSpan.FromSeconds(30), "4 deliveries");
        var dead = await WaitForDeadAsync(scenario.Database, 2);

        Assert.That(scenario.Receiver.DeliveredEventIds(), Is.EquivalentTo(new[] { events[0], events[1], events[2], events[5] }));
        Assert.That(scenario.Receiver.Requests.Select(r => r.EventId), Has.None.EqualTo(events[3]).And.None.EqualTo(events[4]));
        Assert.That(dead[events[3]], Does.Match(@"^event is 97\.\d KiB, over max_event_bytes 64 KiB$"));
        Assert.That(dead[events[4]], Does.StartWith($"event {events[4]} is no longer in the event log"));
        Assert.That(second.Output, Does.Contain("over max_event_bytes 64 KiB"));
    }

    [Test]
    public async Task An_event_too_large_for_PostgreSQL_to_render_is_dead_with_its_reason_and_holds_back_nothing()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        await scenario.Database.ExecuteAsync("ALTER TABLE orders ADD COLUMN note text");
        await using var worker = await scenario.StartWorkerAsync(scenario.WriteConfig());
        // 180 MiB of control characters: stored in a few MiB, each one six bytes as JSON text
        // (\u0001), over the 1 GB PostgreSQL can make of one value. Rendering it to measure it
        // failed every claim of the subscription, and nothing else was delivered.
        await scenario.InsertOrdersAsync(1, 2);
        await scenario.Database.ExecuteAsync("INSERT INTO orders (id, note) VALUES (3, repeat(chr(1), 180 * 1024 * 1024))");
        await scenario.InsertOrdersAsync(4, 5);
        var events = await scenario.CapturedEventIdsAsync();

        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 4, TimeSpan.FromSeconds(60), "4 deliveries");
        var dead = await WaitForDeadAsync(scenario.Database, 1);

        Assert.That(scenario.Receiver.DeliveredEventIds(), Is.EquivalentTo(new[] { events[0], events[1], events[3], events[4] }));
        Assert.That(scenario.Receiver.Requests.Select(r => r.EventId), Has.None.EqualTo(events[2]));
        Assert.That(dead[events[2]], Does.StartWith("event is over 1 GiB as JSON text, more than PostgreSQL can render").And.EndWith("over max_event_bytes 4 MiB"));
        Assert.That(worker.Output, Does.Not.Contain("Claiming failed"));
    }

    [Test]
    public async Task An_event_holding_bytes_that_are_not_UTF8_in_a_SQL_ASCII_database_is_dead_with_its_reason_and_holds_back_nothing()
    {
        await using var scenario = await WorkerScenario.CreateAsync(encoding: "SQL_ASCII");
        await using var worker = await scenario.StartWorkerAsync(scenario.WriteConfig());
        // An application writing ISO-8859-1 into a database that takes any bytes: 0xE9 is 'é' to
        // it and no UTF-8 at all. Beside it, a UTF-8 'é', a plain row, and a large row (read apart
        // from its claim) with the same Latin-1 byte in it.
        await scenario.Database.ExecuteAsync("""
            ALTER TABLE orders ADD COLUMN note text;
            INSERT INTO orders (id, status) VALUES (1, 'caf' || convert_from('\xe9'::bytea, 'SQL_ASCII'));
            INSERT INTO orders (id, status) VALUES (2, 'caf' || convert_from('\xc3a9'::bytea, 'SQL_ASCII'));
            INSERT INTO orders (id, status) VALUES (3, 'paid');
            INSERT INTO orders (id, status, note) VALUES (4, 'big', repeat('x', 70000) || convert_from('\xe9'::bytea, 'SQL_ASCII'));
            """);
        var events = await scenario.CapturedEventIdsAsync();

        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 2, TimeSpan.FromSeconds(30), "2 deliveries");
        var dead = await WaitForDeadAsync(scenario.Database, 2);

        Assert.That(scenario.Receiver.DeliveredEventIds(), Is.EquivalentTo(new[] { events[1], events[2] }));
        Assert.That(dead[events[0]], Does.Contain("new row is not valid UTF-8"));
        Assert.That(dead[events[3]], Does.Contain("not valid UTF-8"), "the large event's values are read apart and checked too");
        var utf8 = scenario.Receiver.Requests.First(r => r.EventId == events[1]);
        using var body = JsonDocument.Parse(utf8.Body);
        Assert.That(body.RootElement.GetProperty("event").GetProperty("data").GetProperty("new").GetProperty("status").GetString(), Is.EqualTo("café"));
    }

    [Test]
    public async Task Sixty_four_deliveries_of_2_MB_rows_in_flight_stay_under_the_documented_peak()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        await scenario.Database.ExecuteAsync("ALTER TABLE orders ADD COLUMN note text");

        // The receiver answers none until all 64 are open at once: every body has been sent,
        // and none of them answered yet.
        const int count = 64;
        var arrived = 0;
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        scenario.Receiver.Respond = _ =>
        {
            if (Interlocked.Increment(ref arrived) == count)
            {
                all.TrySetResult();
            }

            return new ReceiverResponse(200, Until: all.Task);
        };
        var port = Loopback.FreePort();
        var file = Path.Combine(scenario.Directory, "memory.yaml");
        await File.WriteAllTextAsync(file, $"""
            subscriptions:
              - name: big-rows
                trigger: {scenario.Trigger}
                operations: [UPDATE]
                max_in_flight: {count}
                webhook:
                  url: {scenario.Receiver.Url()}
                  timeout: 50s
            worker:
              http_port: {port}
              poll_interval: 200ms
              concurrency: {count}
              lease: 60s
              shutdown_timeout: 55s
            """);
        var worker = await scenario.StartWorkerAsync((file, port));

        // 2,000,000 characters of note, old and new: a 4 MB body each, 256 MB in all.
        await scenario.Database.ExecuteAsync(
            $"INSERT INTO orders (id, note) SELECT g, repeat(md5(g::text), 62500) FROM generate_series(1, {count}) g");
        await scenario.Database.ExecuteAsync("UPDATE orders SET status = 'paid'");
        try
        {
            await all.Task.WaitAsync(TimeSpan.FromSeconds(120));
        }
        catch (TimeoutException)
        {
            var states = await scenario.Database.ScalarAsync<string>("SELECT string_agg(status || ':' || coalesce(last_error, ''), ', ') FROM trigger_events.deliveries");
            Assert.Fail($"{Volatile.Read(ref arrived)} of {count} requests arrived; deliveries: {states}\n{worker.Output}");
        }

        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == count, TimeSpan.FromSeconds(60), $"{count} deliveries");
        var peakKiB = PeakResidentKiB(worker.Id);

        var body = scenario.Receiver.Requests.First(r => r.Succeeded);
        using var json = JsonDocument.Parse(body.Body);
        Assert.That(json.RootElement.GetProperty("event").GetProperty("data").GetProperty("new").GetProperty("note").GetString(), Has.Length.EqualTo(2_000_000));
        Assert.That(body.Body, Has.Length.GreaterThan(4_000_000));
        Assert.That(scenario.Receiver.DuplicateDeliveries, Is.Zero);
        TestContext.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"peak resident memory (VmHWM) of the worker: {peakKiB / 1024.0:F1} MiB"));
        var bound = PeakBoundMiB + (WorkerProcess.ExecutablePath.EndsWith(".dll", StringComparison.Ordinal) ? JitRuntimeMiB : 0);
        Assert.That(peakKiB / 1024, Is.LessThan(bound), "MiB at the peak, with 64 bodies of 4 MB sent and unanswered");
    }

    /// <summary>The process's peak resident set size, VmHWM, in KiB.</summary>
    private static long PeakResidentKiB(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").Single(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }

    /// <summary>Waits until <paramref name="count"/> deliveries are dead; returns their last errors by event id.</summary>
    private static async Task<Dictionary<long, string>> WaitForDeadAsync(TestDatabase database, int count)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'dead'") < count)
        {
            await Task.Delay(50, deadline.Token);
        }

        await using var command = database.DataSource.CreateCommand("SELECT event_id, last_error FROM trigger_events.deliveries WHERE status = 'dead'");
        await using var reader = await command.ExecuteReaderAsync();
        var dead = new Dictionary<long, string>();
        while (await reader.ReadAsync())
        {
            dead[reader.GetInt64(0)] = reader.GetString(1);
        }

        return dead;
    }
}
