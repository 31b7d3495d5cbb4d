using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Prometheus;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;
using TriggerEvents.Worker.Delivery;
using TriggerEvents.Worker.Signals;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SPEC "Worker": results are written to the database after the request, and nothing is lost
/// when a write fails. A delivery whose result cannot be written stays in flight, so these
/// failures would show as deliveries that never settle.
/// </summary>
public sealed class RecordingTests
{
    [Test]
    public async Task A_response_body_with_a_NUL_character_is_recorded_and_does_not_stall_delivery()
    {
        // PostgreSQL text cannot hold U+0000; an excerpt written as received fails the write of
        // the whole batch of results, every time it is tried.
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with { MaxAttempts = 3 };
        harness.Receiver.Respond = r => r.Attempt == 1 ? new ReceiverResponse(500, Body: "broken\0body") : ReceiverResponse.Ok;
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 2);
        var deliveries = await harness.WaitUntilSettledAsync(2);

        Assert.That(deliveries.Select(d => (d.Status, d.Attempts)), Is.All.EqualTo(("delivered", 2)));
        var first = (await harness.AttemptsAsync()).Where(a => a.Attempt == 1).ToList();
        Assert.That(first.Select(a => a.HttpStatus), Is.All.EqualTo(500));
        Assert.That(first.Select(a => a.ResponseExcerpt), Is.All.StartWith("broken").And.All.EndWith("body"));
        await harness.AssertLedgerAsync(delivered: 2, dead: 0);
    }

    [Test]
    public async Task A_result_whose_write_failed_is_written_on_retry_without_waiting_for_another_result()
    {
        await using var harness = await DeliveryHarness.CreateAsync();

        // The first write of results fails as a transient database error would; a sequence
        // counts the writes because it is not rolled back with the failed statement.
        await harness.Database.ExecuteAsync("""
            CREATE SEQUENCE public.result_writes;
            CREATE FUNCTION public.fail_first_result_write() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
            BEGIN
                IF nextval('public.result_writes') = 1 THEN
                    RAISE EXCEPTION 'simulated failure of the first result write' USING ERRCODE = '40001';
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER fail_first_result_write AFTER INSERT ON trigger_events.attempts
                FOR EACH STATEMENT EXECUTE FUNCTION public.fail_first_result_write();
            """);
        var hook = harness.Hook("orders-hook");
        await harness.StartWorkerAsync(hook);

        // One event only: no later result comes along to carry the failed one with it.
        await harness.InsertOrdersAsync(1, 1);
        var delivery = (await harness.WaitUntilSettledAsync(1)).Single();

        Assert.That((delivery.Status, delivery.Attempts), Is.EqualTo(("delivered", 1)));
        Assert.That(harness.Worker.Output, Does.Contain("simulated failure of the first result write"), "the first write did fail");
        await harness.AssertLedgerAsync(delivered: 1, dead: 0);
    }

    [Test]
    public async Task A_result_the_database_always_refuses_does_not_hold_back_the_others()
    {
        await using var harness = await DeliveryHarness.CreateAsync();

        // Every write that records event 3's attempt (a success, on its delivery) fails with a
        // data error, whatever is retried.
        await harness.Database.ExecuteAsync("""
            CREATE FUNCTION public.refuse_event_3() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.event_id = 3 AND NEW.status = 'delivered' THEN
                    RAISE EXCEPTION 'event 3 cannot be recorded' USING ERRCODE = '22023';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_event_3 BEFORE UPDATE ON trigger_events.deliveries
                FOR EACH ROW EXECUTE FUNCTION public.refuse_event_3();
            """);
        await harness.StartWorkerAsync(harness.Hook("orders-hook"));

        await harness.InsertOrdersAsync(1, 6);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        long recorded;
        do
        {
            await Task.Delay(50, deadline.Token);
            recorded = await harness.Database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered'");
        }
        while (recorded < 5 || !harness.Worker.Output.Contains("Could not record the result of event 3", StringComparison.Ordinal));

        Assert.That(await harness.Database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered' AND event_id <> 3"), Is.EqualTo(5));
        Assert.That(await harness.Database.ScalarAsync<string>("SELECT status::text FROM trigger_events.deliveries WHERE event_id = 3"), Is.EqualTo("in_flight"),
            "the refused result is given up; its lease expires and the delivery is attempted again");
    }

    [Test]
    public async Task A_stopping_worker_gives_up_more_results_than_one_write_holds_when_the_database_stays_away()
    {
        // Nothing listens on port 1: every write fails at once, as with a database that is gone.
        await using var dataSource = NpgsqlDataSource.Create("Host=127.0.0.1;Port=1;Timeout=1");
        var store = new DeliveryStore(dataSource);
        var owner = Guid.NewGuid();
        var held = new HeldDeliveries(store, owner, TimeSpan.FromSeconds(60), TimeProvider.System, new WakeSignal(), NullLogger.Instance);
        var protection = new TargetProtection([], TimeProvider.System, new WorkerMetrics(Metrics.NewCustomRegistry()), NullLogger.Instance);
        var recorder = new ResultRecorder(store, owner, held, protection, 1, TimeProvider.System, NullLogger.Instance);
        for (var eventId = 1; eventId <= 1500; eventId++)
        {
            recorder.Post(new DeliveryResult(
                new DeliveryKey(1, eventId), 1, DeliveryResultKind.Delivered, TimeSpan.Zero, 204, null, DateTimeOffset.UtcNow, TimeSpan.Zero, null));
        }

        recorder.Complete();
        var recording = recorder.RunAsync(CancellationToken.None);

        // Five retries back off for about 3 s in all; before, 500 results left in the channel
        // kept it from ever counting as complete, and the worker never stopped.
        Assert.That(await Task.WhenAny(recording, Task.Delay(TimeSpan.FromSeconds(60))), Is.SameAs(recording),
            "the recorder gave up and the worker can stop; the leases expire and the deliveries are attempted again");
        Assert.That(recording.Exception, Is.Null, "it gave up without an error of its own");
    }
}
