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
}
