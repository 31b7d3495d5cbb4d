using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SPEC "Webhook request", outcome: what each class of response does to a delivery, seen from
/// the receiver and from <c>trigger_events.deliveries</c> and <c>trigger_events.attempts</c>.
/// In process (<see cref="RoundHarness"/>): retries are crossed by moving the clock.
/// </summary>
public sealed class ResponseClassTests
{
    private RoundHarness harness = null!;

    [SetUp]
    public async Task StartAsync() => harness = await RoundHarness.CreateAsync();

    [TearDown]
    public async Task StopAsync() => await harness.DisposeAsync();

    [TestCase(200)]
    [TestCase(202)]
    [TestCase(204)]
    public async Task A_2xx_answer_delivers_each_event_once(int status)
    {
        harness.Receiver.Respond = _ => new ReceiverResponse(status);
        var worker = await harness.WorkerAsync(harness.Subscription("orders-hook"));

        await harness.InsertOrdersAsync(1, 5);
        var deliveries = await harness.RunUntilSettledAsync(worker, 5);

        Assert.That(
            deliveries.Select(d => (d.Status, d.Attempts, d.LastStatus, d.LastError)),
            Is.All.EqualTo(("delivered", 1, (int?)status, (string?)null)));
        Assert.That(
            (await harness.AttemptsAsync()).Select(a => (a.Attempt, a.HttpStatus, a.Error)),
            Is.EqualTo(Enumerable.Repeat((1, (int?)status, (string?)null), 5)));
        await harness.AssertLedgerAsync(delivered: 5, dead: 0);
    }

    [Test]
    public async Task Gone_410_is_dead_after_one_attempt()
    {
        harness.Receiver.Respond = _ => new ReceiverResponse(410, Body: "this endpoint was removed");
        var worker = await harness.WorkerAsync(harness.Subscription("orders-hook", maxAttempts: 5));

        await harness.InsertOrdersAsync(1, 2);
        var deliveries = await harness.RunUntilSettledAsync(worker, 2);

        foreach (var delivery in deliveries)
        {
            Assert.That((delivery.Status, delivery.Attempts, delivery.LastStatus), Is.EqualTo(("dead", 1, (int?)410)));
            Assert.That(delivery.LastError, Does.Contain("410"));
        }

        var attempts = await harness.AttemptsAsync();
        Assert.That(attempts.Select(a => (a.EventId, a.Attempt, a.HttpStatus)), Is.EqualTo(deliveries.Select(d => (d.EventId, 1, (int?)410))));
        Assert.That(attempts.Select(a => a.ResponseExcerpt), Is.All.EqualTo("this endpoint was removed"));
        await harness.AssertLedgerAsync(delivered: 0, dead: 2);
    }

    [TestCase(301)]
    [TestCase(302)]
    [TestCase(307)]
    [TestCase(308)]
    public async Task A_redirect_is_not_followed_and_counts_as_a_failed_attempt(int status)
    {
        var moved = harness.Receiver.Url("/moved").ToString();
        harness.Receiver.Respond = r => r.Path == "/hook"
            ? new ReceiverResponse(status, Headers: new Dictionary<string, string> { ["Location"] = moved })
            : ReceiverResponse.Ok;
        var worker = await harness.WorkerAsync(harness.Subscription("orders-hook", maxAttempts: 2));

        await harness.InsertOrdersAsync(1, 1);
        var delivery = (await harness.RunUntilSettledAsync(worker, 1)).Single();

        Assert.That((delivery.Status, delivery.Attempts, delivery.LastStatus), Is.EqualTo(("dead", 2, (int?)status)));
        Assert.That(delivery.LastError, Does.Contain($"HTTP {status}"));
        Assert.That((await harness.AttemptsAsync()).Select(a => a.HttpStatus), Is.EqualTo(new int?[] { status, status }));
        Assert.That(harness.Receiver.Requests.Select(r => r.Path), Is.All.EqualTo("/hook"), "the Location was never requested");
        await harness.AssertLedgerAsync(delivered: 0, dead: 1);
    }

    [TestCase(400)]
    [TestCase(404)]
    [TestCase(429)]
    [TestCase(500)]
    [TestCase(503)]
    public async Task A_4xx_or_5xx_is_retried_until_the_receiver_accepts(int status)
    {
        harness.Receiver.Respond = r => r.Attempt <= 2 ? new ReceiverResponse(status) : ReceiverResponse.Ok;
        var worker = await harness.WorkerAsync(harness.Subscription("orders-hook", maxAttempts: 5));

        await harness.InsertOrdersAsync(1, 3);
        var deliveries = await harness.RunUntilSettledAsync(worker, 3);

        Assert.That(
            deliveries.Select(d => (d.Status, d.Attempts, d.LastStatus, d.LastError)),
            Is.All.EqualTo(("delivered", 3, (int?)200, (string?)null)));
        var attempts = await harness.AttemptsAsync();
        foreach (var delivery in deliveries)
        {
            var log = attempts.Where(a => a.EventId == delivery.EventId).ToList();
            Assert.That(log.Select(a => (a.Attempt, a.HttpStatus)), Is.EqualTo(new[] { (1, (int?)status), (2, status), (3, 200) }));
            Assert.That(log[0].Error, Is.EqualTo($"HTTP {status}"));
        }

        await harness.AssertLedgerAsync(delivered: 3, dead: 0);
    }

    [Test]
    public async Task After_max_attempts_the_delivery_is_dead_with_the_last_status_and_error_kept()
    {
        harness.Receiver.Respond = r => r.Attempt switch
        {
            1 => new ReceiverResponse(500, Body: "first: database down"),
            2 => new ReceiverResponse(503, Body: "second: overloaded"),
            _ => new ReceiverResponse(400, Body: "third: bad payload"),
        };
        var worker = await harness.WorkerAsync(harness.Subscription("orders-hook"));

        await harness.InsertOrdersAsync(1, 2);
        var deliveries = await harness.RunUntilSettledAsync(worker, 2);

        foreach (var delivery in deliveries)
        {
            Assert.That((delivery.Status, delivery.Attempts, delivery.LastStatus), Is.EqualTo(("dead", 3, (int?)400)));
            Assert.That(delivery.LastError, Does.Contain("3 attempts").And.Contain("HTTP 400"));
        }

        var attempts = await harness.AttemptsAsync();
        foreach (var delivery in deliveries)
        {
            Assert.That(
                attempts.Where(a => a.EventId == delivery.EventId).Select(a => (a.Attempt, a.HttpStatus, a.ResponseExcerpt)),
                Is.EqualTo(new[] { (1, (int?)500, "first: database down"), (2, 503, "second: overloaded"), (3, 400, "third: bad payload") }));
        }

        await harness.AssertLedgerAsync(delivered: 0, dead: 2);
    }

    [Test]
    public async Task With_max_attempts_1_the_first_failure_is_dead()
    {
        harness.Receiver.Respond = _ => new ReceiverResponse(500);
        var worker = await harness.WorkerAsync(harness.Subscription("orders-hook", maxAttempts: 1));

        await harness.InsertOrdersAsync(1, 1);
        var delivery = (await harness.RunUntilSettledAsync(worker, 1)).Single();

        Assert.That((delivery.Status, delivery.Attempts, delivery.LastStatus), Is.EqualTo(("dead", 1, (int?)500)));
        Assert.That(harness.Receiver.Requests.Single().BodyText, Does.Contain("\"max_retries\":0"));
        await harness.AssertLedgerAsync(delivered: 0, dead: 1);
    }
}
