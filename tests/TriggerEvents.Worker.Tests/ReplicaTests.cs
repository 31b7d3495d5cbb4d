using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// Several worker replicas on one database share the work with no duplicates while nothing
/// fails, and a subscription's <c>max_in_flight</c> holds across all of them (SPEC "Worker").
/// </summary>
public sealed class ReplicaTests
{
    private const int Events = 2000;
    private const int MaxInFlight = 4;

    [TestCase(2)]
    [TestCase(4)]
    public async Task Replicas_deliver_every_event_exactly_once_and_keep_max_in_flight_together(int replicas)
    {
        await using var scenario = await FaultScenario.CreateAsync();

        // Each replica alone could run 64 requests: only the shared limit keeps the receiver at 4.
        // A short answer delay makes requests overlap, so that exceeding the limit would show.
        var options = new FaultWorkerOptions { MaxInFlight = MaxInFlight, Concurrency = 64, BatchSize = 100 };
        scenario.Receiver.Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(10));
        await Task.WhenAll(Enumerable.Range(0, replicas).Select(_ => scenario.StartWorkerAsync(options)));

        for (var from = 1; from <= Events; from += 100)
        {
            await scenario.InsertOrdersAsync(from, from + 99);
        }

        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromMinutes(4));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));

        Assert.That(await scenario.CapturedEventIdsAsync(), Has.Count.EqualTo(Events));
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty, "lost events");
        Assert.That(scenario.Receiver.Inner.DuplicateDeliveries, Is.Zero, "duplicates");
        Assert.That(scenario.Receiver.Arrivals, Has.Count.EqualTo(Events), "every event was sent exactly once");
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE attempts <> 1"), Is.Zero,
            "every delivery took exactly one attempt");
        Assert.That(scenario.Receiver.MaxOpen, Is.LessThanOrEqualTo(MaxInFlight), "requests open at once across the replicas");

        var workers = await scenario.ScalarAsync<long>("SELECT count(DISTINCT worker) FROM trigger_events.attempt_counts");
        TestContext.Out.WriteLine($"{replicas} replicas: most open at once {scenario.Receiver.MaxOpen}, workers that delivered {workers}; {await scenario.SummaryAsync()}");
    }
}
