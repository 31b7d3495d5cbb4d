using System.Text.Json;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Worker.Tests;

/// <summary>The worker process delivering to a real receiver: the happy path and the payload.</summary>
public sealed class DeliveryTests
{
    [Test]
    public async Task Inserted_rows_reach_the_webhook_signed_with_the_Hasura_shaped_body()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        const string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        await using var worker = await scenario.StartWorkerAsync(scenario.WriteConfig(webhookYaml: $"""
            signing_secret: {secret}
            headers:
              Authorization: Bearer s3cr3t-token
            """));

        await scenario.InsertOrdersAsync(1, 3);
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 3, TimeSpan.FromSeconds(30), "3 deliveries");

        var request = scenario.Receiver.Requests.First(r => r.Succeeded);
        Assert.That(request.Headers["content-type"], Does.StartWith("application/json"));
        Assert.That(request.Headers["user-agent"], Does.StartWith("triggerevents/"));
        Assert.That(request.Headers["authorization"], Is.EqualTo("Bearer s3cr3t-token"));
        var verification = WebhookSigner.Verify(
            request.WebhookId, request.Headers["webhook-timestamp"], request.Body, request.Headers["webhook-signature"], [secret], DateTimeOffset.UtcNow);
        Assert.That(verification, Is.EqualTo(WebhookVerification.Valid));
        using var body = JsonDocument.Parse(request.Body);
        Assert.That(body.RootElement.GetProperty("trigger").GetProperty("name").GetString(), Is.EqualTo("orders_changed"));
        Assert.That(body.RootElement.GetProperty("table").GetProperty("name").GetString(), Is.EqualTo("orders"));
        Assert.That(body.RootElement.GetProperty("event").GetProperty("op").GetString(), Is.EqualTo("INSERT"));
        Assert.That(body.RootElement.GetProperty("delivery_info").GetProperty("current_retry").GetInt32(), Is.Zero);
        Assert.That(worker.Output, Does.Not.Contain("s3cr3t-token"), "header values are never logged");
    }
}
