using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SPEC "Webhook request": a timeout or a connection error is a failed attempt, retried with
/// backoff, and dead after <c>max_attempts</c> with the error kept.
/// </summary>
public sealed class TransportFailureTests
{
    [Test]
    public async Task A_receiver_slower_than_the_timeout_is_a_failed_attempt_then_delivered_when_it_answers_in_time()
    {
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with { Timeout = "500ms", MaxAttempts = 3 };
        harness.Receiver.Respond = r => r.Attempt == 1 ? new ReceiverResponse(200, Delay: TimeSpan.FromSeconds(10)) : ReceiverResponse.Ok;
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 2);
        var deliveries = await harness.WaitUntilSettledAsync(2);
        await harness.AssertLedgerAsync(delivered: 2, dead: 0);

        Assert.That(deliveries.Select(d => (d.Status, d.Attempts, d.LastStatus)), Is.All.EqualTo(("delivered", 2, (int?)200)));
        var attempts = await harness.AttemptsAsync();
        foreach (var delivery in deliveries)
        {
            var log = attempts.Where(a => a.EventId == delivery.EventId).ToList();
            Assert.That(log.Select(a => (a.Attempt, a.HttpStatus)), Is.EqualTo(new[] { (1, (int?)null), (2, 200) }));
            Assert.That(log[0].Error, Does.Contain("timeout").And.Contain("500ms"));
            Assert.That(harness.RequestsFor(hook, delivery.EventId)[0].Status, Is.Zero, "the worker hung up on the slow answer");
        }
    }

    [Test]
    public async Task A_receiver_that_always_times_out_is_dead_with_the_timeout_kept()
    {
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with { Timeout = "500ms", MaxAttempts = 2 };
        harness.Receiver.Respond = _ => new ReceiverResponse(200, Delay: TimeSpan.FromSeconds(10));
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 1);
        var delivery = (await harness.WaitUntilSettledAsync(1)).Single();
        await harness.AssertLedgerAsync(delivered: 0, dead: 1);

        Assert.That((delivery.Status, delivery.Attempts, delivery.LastStatus), Is.EqualTo(("dead", 2, (int?)null)));
        Assert.That(delivery.LastError, Does.Contain("2 attempts").And.Contain("timeout").And.Contain("500ms"));
    }

    [Test]
    public async Task A_closed_port_is_retried_then_dead_with_the_connection_error_kept_while_other_subscriptions_deliver()
    {
        await using var harness = await DeliveryHarness.CreateAsync();
        var closed = new Hook("closed-port", new Uri($"http://127.0.0.1:{WorkerProcess.FreePort()}/hook")) { MaxAttempts = 3 };
        var open = harness.Hook("open-port");
        await harness.StartWorkerAsync(closed, open);

        await harness.InsertOrdersAsync(1, 3);
        var deliveries = await harness.WaitUntilSettledAsync(6);
        await harness.AssertLedgerAsync(delivered: 3, dead: 3);

        foreach (var delivery in deliveries.Where(d => d.Subscription == closed.Name))
        {
            Assert.That((delivery.Status, delivery.Attempts, delivery.LastStatus), Is.EqualTo(("dead", 3, (int?)null)));
            Assert.That(delivery.LastError, Does.Contain("connection error").And.Contain("refused").IgnoreCase);
        }

        var attempts = (await harness.AttemptsAsync()).Where(a => a.Subscription == closed.Name).ToList();
        Assert.That(attempts, Has.Count.EqualTo(9));
        Assert.That(attempts.Select(a => a.HttpStatus), Is.All.Null);
        Assert.That(attempts.Select(a => a.Error), Has.All.Contains("refused").IgnoreCase);
        Assert.That(deliveries.Where(d => d.Subscription == open.Name).Select(d => (d.Status, d.Attempts)), Is.All.EqualTo(("delivered", 1)));
    }
}
