using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SIGTERM, as a container runtime sends it: the worker stops claiming, finishes or releases
/// what it holds, and exits 0 within its shutdown timeout (SPEC "Worker").
/// </summary>
public sealed class ShutdownTests
{
    [Test]
    public async Task Sigterm_stops_claiming_finishes_the_requests_in_flight_and_exits_0()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var options = new FaultWorkerOptions { MaxInFlight = 8, Concurrency = 8, ShutdownTimeout = "30s" };
        scenario.Receiver.Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(1000));
        var worker = await scenario.StartWorkerAsync(options);
        await scenario.InsertOrdersAsync(1, 40);
        await scenario.Receiver.WaitUntilAsync(r => r.Arrivals.Count >= 1, TimeSpan.FromSeconds(60), "a request in flight");

        var exit = worker.TerminateAsync(TimeSpan.FromSeconds(60));
        await FaultScenario.WaitForOutputAsync(worker, "Stopping:", TimeSpan.FromSeconds(30));

        // Captured after the claim loop has stopped: the stopping worker must not take these.
        await scenario.InsertOrdersAsync(41, 50);
        var afterStop = (await scenario.CapturedEventIdsAsync()).OrderDescending().Take(10).ToHashSet();

        Assert.That(await exit, Is.Zero, worker.Output);
        var arrived = scenario.Receiver.ArrivedEventIds();
        Assert.That(arrived, Is.Not.Empty);
        Assert.That(arrived.Overlaps(afterStop), Is.False, "the worker claimed after SIGTERM");
        Assert.That(scenario.Receiver.Inner.Requests, Has.Count.EqualTo(scenario.Receiver.Arrivals.Count).And.All.Matches<ReceivedRequest>(r => r.Succeeded),
            "every request in flight at SIGTERM was allowed to finish");
        var statuses = await scenario.DeliveryStatusesAsync();
        Assert.That(statuses["in_flight"], Is.Zero, "nothing is left leased");
        Assert.That(statuses["delivered"], Is.EqualTo(arrived.Count), "every finished request was recorded");
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'pending' AND attempts > 0"), Is.Zero,
            "no attempt was counted for what was never sent");

        scenario.Receiver.Answer = _ => ReceiverResponse.Ok;
        await scenario.StartWorkerAsync(options);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty, "lost events");
        Assert.That(scenario.Receiver.Inner.DuplicateDeliveries, Is.Zero, "duplicates after a clean shutdown");
    }

    [Test]
    public async Task Sigterm_waits_for_a_request_that_outlasts_its_webhook_timeout_and_records_it_as_a_failed_attempt_instead_of_releasing_it()
    {
        await using var scenario = await FaultScenario.CreateAsync();

        // The receiver never answers in time. The configuration insists on a webhook timeout shorter
        // than the shutdown timeout, so each request in flight at SIGTERM ends (as a timeout) before
        // the worker stops waiting: nothing the receiver may have acted on is released for another
        // worker to send again as if it had never been attempted.
        var options = new FaultWorkerOptions { MaxInFlight = 4, Concurrency = 4, ShutdownTimeout = "10s", WebhookTimeout = "2s", Lease = "30s" };
        scenario.Receiver.Answer = _ => new ReceiverResponse(200, TimeSpan.FromSeconds(15));
        var worker = await scenario.StartWorkerAsync(options);
        await scenario.InsertOrdersAsync(1, 20);
        await scenario.Receiver.WaitUntilAsync(r => r.Arrivals.Count >= 4, TimeSpan.FromSeconds(60), "4 requests in flight");

        Assert.That(await worker.TerminateAsync(TimeSpan.FromSeconds(60)), Is.Zero, worker.Output);

        Assert.That(worker.Output, Does.Not.Contain("Released"), "nothing was released");
        var statuses = await scenario.DeliveryStatusesAsync();
        Assert.That(statuses["in_flight"], Is.Zero, "nothing is left leased");
        Assert.That(statuses["pending"], Is.EqualTo(scenario.Receiver.ArrivedEventIds().Count), "the timed-out deliveries wait for their retry");
        Assert.That(
            await scenario.ScalarAsync<long>("SELECT pending + retrying FROM trigger_events.subscription_status WHERE subscription = 'orders-hook'"),
            Is.EqualTo(20), "the rest wait with them, as deliveries or in the log");
        Assert.That(
            await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE attempts = 1 AND last_error LIKE '%timeout%'"),
            Is.EqualTo(scenario.Receiver.ArrivedEventIds().Count),
            "every request that reached the receiver counts as one failed attempt");

        scenario.Receiver.Answer = _ => ReceiverResponse.Ok;
        await scenario.StartWorkerAsync(options);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty, "lost events");
    }
}
