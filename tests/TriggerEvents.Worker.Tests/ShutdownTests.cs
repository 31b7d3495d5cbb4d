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
    public async Task Sigterm_releases_the_requests_a_slow_receiver_could_not_answer_within_the_shutdown_timeout()
    {
        await using var scenario = await FaultScenario.CreateAsync();

        // The receiver answers long after the shutdown timeout (but within the webhook timeout):
        // the worker has to cut those requests short, give them back and still exit 0.
        var options = new FaultWorkerOptions { MaxInFlight = 4, Concurrency = 4, ShutdownTimeout = "1s", WebhookTimeout = "20s", Lease = "30s" };
        scenario.Receiver.Answer = _ => new ReceiverResponse(200, TimeSpan.FromSeconds(15));
        var worker = await scenario.StartWorkerAsync(options);
        await scenario.InsertOrdersAsync(1, 20);
        await scenario.Receiver.WaitUntilAsync(r => r.Arrivals.Count >= 4, TimeSpan.FromSeconds(60), "4 requests in flight");

        Assert.That(await worker.TerminateAsync(TimeSpan.FromSeconds(60)), Is.Zero, worker.Output);

        // Exiting before the receiver answered anything shows the worker did not wait for it.
        Assert.That(scenario.Receiver.Inner.Requests.Where(r => r.Succeeded), Is.Empty, "a request finished before the worker exited");
        var cutShort = scenario.Receiver.ArrivedEventIds();
        var statuses = await scenario.DeliveryStatusesAsync();
        Assert.That(statuses["in_flight"], Is.Zero, "nothing is left leased: what was cut short was released");
        Assert.That(statuses["pending"], Is.EqualTo(20), "every delivery is pending again");
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE attempts > 0"), Is.Zero,
            "the attempts of released deliveries were given back");
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE lease_owner IS NOT NULL"), Is.Zero);

        scenario.Receiver.Answer = _ => ReceiverResponse.Ok;
        await scenario.StartWorkerAsync(options);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty, "lost events");
        Assert.That(scenario.Receiver.DeliveredEventIds().IsSupersetOf(cutShort), Is.True, "the cut-short deliveries were delivered by the next worker");
        Assert.That(scenario.Receiver.Inner.DuplicateDeliveries, Is.Zero);
    }
}
