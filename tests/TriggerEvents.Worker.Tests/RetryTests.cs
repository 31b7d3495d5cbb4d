using System.Globalization;
using System.Text.Json.Nodes;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SPEC "Webhook request": retries of one event keep its webhook-id, count
/// <c>delivery_info.current_retry</c> up, carry a fresh timestamp, and wait with exponential
/// backoff and full jitter, never longer than <c>max_interval</c>.
/// </summary>
public sealed class RetryTests
{
    [Test]
    public async Task Each_retry_counts_current_retry_up_and_keeps_the_webhook_id_with_a_fresh_timestamp()
    {
        await using var harness = await DeliveryHarness.CreateAsync();

        // Retry-After: 1 puts each attempt in a later second than the one before, so a timestamp
        // copied from the first attempt would show.
        var hook = harness.Hook("orders-hook") with { MaxAttempts = 4, MaxInterval = "2s" };
        harness.Receiver.Respond = r => r.Attempt <= 2
            ? new ReceiverResponse(503, Headers: new Dictionary<string, string> { ["Retry-After"] = "1" })
            : ReceiverResponse.Ok;
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 1);
        var delivery = (await harness.WaitUntilSettledAsync(1)).Single();
        await harness.AssertLedgerAsync(delivered: 1, dead: 0);

        Assert.That((delivery.Status, delivery.Attempts), Is.EqualTo(("delivered", 3)));
        var requests = harness.RequestsFor(hook, delivery.EventId);
        Assert.That(requests.Select(r => r.Status), Is.EqualTo(new[] { 503, 503, 200 }));
        Assert.That(requests.Select(r => r.WebhookId), Is.All.EqualTo($"msg_orders-hook_{delivery.EventId}"));

        var bodies = requests.Select(r => JsonNode.Parse(r.Body)!.AsObject()).ToList();
        Assert.That(bodies.Select(b => b["delivery_info"]!["current_retry"]!.GetValue<int>()), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.That(bodies.Select(b => b["delivery_info"]!["max_retries"]!.GetValue<int>()), Is.All.EqualTo(3), "max_retries = max_attempts - 1");
        foreach (var body in bodies)
        {
            body.Remove("delivery_info");
        }

        Assert.That(bodies.Select(b => b.ToJsonString()).Distinct().Count(), Is.EqualTo(1), "the event itself is the same on every attempt");

        // The timestamp is taken when the attempt starts: not after it arrived, and, with the
        // Retry-After second in between, in a later second than the previous one arrived.
        var timestamps = requests.Select(r => long.Parse(r.Headers["webhook-timestamp"], CultureInfo.InvariantCulture)).ToList();
        for (var i = 0; i < requests.Count; i++)
        {
            Assert.That(timestamps[i], Is.LessThanOrEqualTo(requests[i].ReceivedAt.ToUnixTimeSeconds()), $"attempt {i + 1}");
            if (i > 0)
            {
                Assert.That(timestamps[i], Is.GreaterThanOrEqualTo(requests[i - 1].ReceivedAt.ToUnixTimeSeconds() + 1), $"attempt {i + 1}");
            }
        }
    }

    [Test]
    public async Task Backoff_waits_stay_under_the_doubling_ceiling_and_max_interval_and_no_retry_starts_early()
    {
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with { MaxAttempts = 6, InitialInterval = "100ms", MaxInterval = "300ms" };
        harness.Receiver.Respond = _ => new ReceiverResponse(500);
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 4);
        var deliveries = await harness.WaitUntilSettledAsync(4);
        await harness.AssertLedgerAsync(delivered: 0, dead: 4);

        Assert.That(deliveries.Select(d => (d.Status, d.Attempts)), Is.All.EqualTo(("dead", 6)));
        foreach (var delivery in deliveries)
        {
            var retries = await harness.RetriesAsync(hook, delivery.EventId);
            Assert.That(retries.Select(r => r.AfterAttempt), Is.EqualTo(new[] { 1, 2, 3, 4, 5 }), "a wait after every failure but the last");
            foreach (var retry in retries)
            {
                // Full jitter: uniform below min(max_interval, initial_interval * 2^(n-1)).
                var ceiling = TimeSpan.FromMilliseconds(Math.Min(300, 100 * Math.Pow(2, retry.AfterAttempt - 1)));
                Assert.That(retry.Delay, Is.InRange(TimeSpan.Zero, ceiling), $"wait after attempt {retry.AfterAttempt}");
                Assert.That(retry.ClaimedAt, Is.Not.Null.And.GreaterThanOrEqualTo(retry.DueAt), $"attempt {retry.AfterAttempt + 1} is not claimed before it is due");
            }
        }
    }

    [Test]
    public async Task An_event_that_fails_twice_then_succeeds_is_delivered_exactly_once()
    {
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with { MaxAttempts = 5 };
        harness.Receiver.Respond = r => r.Attempt <= 2 ? new ReceiverResponse(500) : ReceiverResponse.Ok;
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 10);
        var deliveries = await harness.WaitUntilSettledAsync(10);
        await harness.AssertLedgerAsync(delivered: 10, dead: 0);

        Assert.That(deliveries.Select(d => (d.Status, d.Attempts)), Is.All.EqualTo(("delivered", 3)));
        foreach (var delivery in deliveries)
        {
            Assert.That(harness.RequestsFor(hook, delivery.EventId).Select(r => r.Status), Is.EqualTo(new[] { 500, 500, 200 }));
        }
    }
}
