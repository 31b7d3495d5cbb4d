using System.Globalization;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SPEC "Webhook request": a <c>Retry-After</c> is honoured, capped at <c>max_interval</c>. The
/// wait the worker chose is read from the database, where it is exact; arrival times at the
/// receiver give a lower bound only.
/// </summary>
public sealed class RetryAfterTests
{
    [Test]
    public async Task Retry_After_seconds_delays_the_next_attempt_by_that_much()
    {
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with { MaxAttempts = 3, InitialInterval = "100ms", MaxInterval = "5s" };
        harness.Receiver.Respond = r => r.Attempt == 1
            ? new ReceiverResponse(503, Headers: new Dictionary<string, string> { ["Retry-After"] = "1" })
            : ReceiverResponse.Ok;
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 1);
        var delivery = (await harness.WaitUntilSettledAsync(1)).Single();
        await harness.AssertLedgerAsync(delivered: 1, dead: 0);

        Assert.That((delivery.Status, delivery.Attempts), Is.EqualTo(("delivered", 2)));
        var retry = (await harness.RetriesAsync(hook, delivery.EventId)).Single();
        Assert.That(retry.Delay, Is.EqualTo(TimeSpan.FromSeconds(1)), "the wait is the Retry-After, not the jittered backoff");
        Assert.That(retry.ClaimedAt, Is.Not.Null.And.GreaterThanOrEqualTo(retry.DueAt));
        var requests = harness.RequestsFor(hook, delivery.EventId);
        Assert.That(requests[1].ReceivedAt - requests[0].ReceivedAt, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(1)));
    }

    [TestCase("seconds")]
    [TestCase("http-date")]
    public async Task Retry_After_longer_than_max_interval_is_capped_at_max_interval(string form)
    {
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with { MaxAttempts = 3, InitialInterval = "100ms", MaxInterval = "500ms" };
        harness.Receiver.Respond = r => r.Attempt == 1
            ? new ReceiverResponse(429, Headers: new Dictionary<string, string>
            {
                ["Retry-After"] = form == "seconds"
                    ? "3600"
                    : DateTimeOffset.UtcNow.AddHours(1).ToString("r", CultureInfo.InvariantCulture),
            })
            : ReceiverResponse.Ok;
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 2);
        var deliveries = await harness.WaitUntilSettledAsync(2);
        await harness.AssertLedgerAsync(delivered: 2, dead: 0);

        Assert.That(deliveries.Select(d => (d.Status, d.Attempts)), Is.All.EqualTo(("delivered", 2)));
        foreach (var delivery in deliveries)
        {
            var retry = (await harness.RetriesAsync(hook, delivery.EventId)).Single();
            Assert.That(retry.Delay, Is.EqualTo(TimeSpan.FromMilliseconds(500)), "an hour asked for, max_interval given");
            Assert.That(retry.ClaimedAt, Is.Not.Null.And.GreaterThanOrEqualTo(retry.DueAt));
        }
    }
}
