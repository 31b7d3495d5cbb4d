using System.Text.Json;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// A worker killed with SIGKILL while requests are in flight: it releases nothing, so its
/// leases must expire and another worker must take them over (SPEC "Worker").
/// </summary>
public sealed class CrashTests
{
    [Test]
    public async Task Killed_worker_loses_nothing_and_duplicates_only_what_it_had_in_flight()
    {
        await using var scenario = await FaultScenario.CreateAsync();

        // Eight slow requests at a time, so that a kill always lands on some in flight, and a
        // short lease so that the next worker takes them over quickly.
        var options = new FaultWorkerOptions { MaxInFlight = 8, Concurrency = 8, Lease = "4s", WebhookTimeout = "3s" };
        scenario.Receiver.Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(1500));
        var first = await scenario.StartWorkerAsync(options);
        await scenario.InsertOrdersAsync(1, 40);
        await scenario.Receiver.WaitUntilAsync(r => r.Arrivals.Count >= 12, TimeSpan.FromSeconds(60), "12 requests");

        await first.KillAsync();

        // Before another worker starts, every request of the dead one has been answered or
        // abandoned: from here on, anything that arrives was sent by the next worker.
        await scenario.Receiver.WaitUntilAsync(
            r => r.Inner.Requests.Count == r.Arrivals.Count, TimeSpan.FromSeconds(30), "the killed worker's requests to end");
        var seenBeforeKill = scenario.Receiver.ArrivedEventIds();
        var stranded = await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'in_flight'");
        Assert.That(stranded, Is.GreaterThan(0), "the kill left leased deliveries behind, or there is nothing to take over");

        scenario.Receiver.Answer = _ => ReceiverResponse.Ok;
        var second = await scenario.StartWorkerAsync(options);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(90));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));

        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty, "lost events");
        Assert.That(scenario.Receiver.DuplicatedEventIds(), Is.SubsetOf(seenBeforeKill), "duplicates beyond what the killed worker had sent");
        var (_, metrics) = await second.GetAsync("/metrics");
        Assert.That(metrics, Does.Match(@"(?m)^triggerevents_leases_expired_total [1-9]"), "the second worker took over expired leases");
        TestContext.Out.WriteLine($"stranded at the kill: {stranded}; {await scenario.SummaryAsync()}");
    }

    [Test]
    public async Task An_event_that_kills_every_worker_taking_it_is_dead_after_max_attempts_alone_while_the_rest_is_delivered()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var options = new FaultWorkerOptions { MaxAttempts = 3, Lease = "3s", WebhookTimeout = "2s", ShutdownTimeout = "5s" };

        // The receiver kills the worker that sends the event of order 50 before it can learn the
        // answer, as an out-of-memory kill would, on every attempt.
        WorkerProcess? current = null;
        scenario.Receiver.Answer = request =>
        {
            using var body = JsonDocument.Parse(request.Body);
            if (body.RootElement.GetProperty("event").GetProperty("data").GetProperty("new").GetProperty("id").GetInt64() == 50)
            {
                _ = Volatile.Read(ref current)!.KillAsync();
                return new ReceiverResponse(200, TimeSpan.FromSeconds(10));
            }

            // Slow enough that each kill lands on others in flight, whose results it loses.
            return new ReceiverResponse(200, TimeSpan.FromMilliseconds(300));
        };

        var started = new List<WorkerProcess>();
        try
        {
            var killed = 0;
            var next = 1;
            long poisoned = 0;
            string? status = null;
            do
            {
                Assert.That(killed, Is.LessThan(5), $"the poisoned delivery is still {status} after {killed} kills\n{string.Join("\n---\n", started.Select(w => w.Output))}");
                // Known to the receiver before it can send anything.
                var (path, port) = scenario.WriteConfig(options);
                var worker = WorkerProcess.Start(scenario.ConnectionString, path, port);
                started.Add(worker);
                Volatile.Write(ref current, worker);
                if (next == 1)
                {
                    // Once the first worker has registered the subscription.
                    await worker.WaitUntilReadyAsync(TimeSpan.FromSeconds(120));
                }

                // Writes keep coming while the workers die.
                await scenario.InsertOrdersAsync(next, next + 99);
                next += 100;
                poisoned = poisoned != 0 ? poisoned : await scenario.ScalarAsync<long>("SELECT id FROM trigger_events.event_log WHERE (new_data->>'id')::int = 50");
                await scenario.WaitForDatabaseAsync(
                    async s => worker.HasExited || await s.ScalarAsync<string>($"SELECT status::text FROM trigger_events.deliveries WHERE event_id = {poisoned}") == "dead",
                    TimeSpan.FromSeconds(60), "the worker to be killed or the poisoned delivery to be dead");
                if (worker.HasExited)
                {
                    killed++;
                }

                status = await scenario.ScalarAsync<string>($"SELECT status::text FROM trigger_events.deliveries WHERE event_id = {poisoned}");
            }
            while (status != "dead");

            if (Volatile.Read(ref current)!.HasExited)
            {
                var (path, port) = scenario.WriteConfig(options);
                started.Add(WorkerProcess.Start(scenario.ConnectionString, path, port));
            }

            var captured = await scenario.CapturedEventIdsAsync();
            await scenario.Receiver.WaitUntilAsync(
                r => r.DeliveredEventIds().IsSupersetOf(captured.Where(id => id != poisoned)), TimeSpan.FromSeconds(90), "every other event delivered");
            var dead = await scenario.ScalarAsync<string>($"SELECT concat_ws(' | ', attempts, last_error) FROM trigger_events.deliveries WHERE event_id = {poisoned}");
            var sends = scenario.Receiver.Arrivals.Count(r => r.EventId == poisoned);

            Assert.That(dead, Does.StartWith("3 | gave up after 3 attempts; the last one ended without a result"));
            Assert.That(sends, Is.EqualTo(3), "requests of the poisoned event: max_attempts, each cut short by the kill");
            Assert.That(await scenario.ScalarAsync<long>($"SELECT count(*) FROM trigger_events.attempt_history a WHERE a.event_id = {poisoned}"), Is.Zero, "no result was ever recorded");
            Assert.That(killed, Is.EqualTo(3), "workers killed, one per attempt");
            // Those in flight beside it at a kill lost an attempt, and were taken over with it:
            // each is then sent alone, so it does not die with the culprit.
            await scenario.WaitForDatabaseAsync(
                async s => await s.ScalarAsync<long>($"SELECT count(*) FROM trigger_events.deliveries WHERE status <> 'delivered' AND event_id <> {poisoned}") == 0,
                TimeSpan.FromSeconds(60), "every other delivery recorded as delivered");
            Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'dead'"), Is.EqualTo(1), "dead: the culprit alone");
            Assert.That((await scenario.LostEventIdsAsync()).Where(id => id != poisoned), Is.Empty, "lost events");
            TestContext.Out.WriteLine($"workers started: {started.Count}; {await scenario.SummaryAsync()}");
        }
        finally
        {
            foreach (var worker in started)
            {
                await worker.DisposeAsync();
            }
        }
    }
}
