using System.Text.Json;
using System.Text.RegularExpressions;
using TriggerEvents.Core.Delivery;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary>The README's examples, run as written: what they show is what is delivered.</summary>
public sealed partial class ReadmeTests
{
    private const string Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    private static string Readme => File.ReadAllText(Path.Combine(WorkerProcess.RepositoryRoot, "README.md"));

    /// <summary>The fenced blocks of one language in the README, in order.</summary>
    private static IReadOnlyList<string> Blocks(string language) =>
        [.. Fenced().Matches(Readme).Where(m => m.Groups[1].Value == language).Select(m => m.Groups[2].Value)];

    [Test]
    public async Task The_service_teams_subscription_receives_the_dbas_attach_the_writers_context_and_a_manual_invoke_signed()
    {
        await using var database = await TestDatabase.CreateAsync();
        var cli = new Cli(database.ConnectionString);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, status text)");
        var attach = Regex.Match(Readme, @"^triggerevents attach orders --trigger orders_changed$", RegexOptions.Multiline);
        Assert.That(attach.Success, Is.True, "the README attaches orders_changed from a shell");
        Assert.That((await cli.RunAsync("attach", "orders", "--trigger", "orders_changed")).ExitCode, Is.Zero);

        await using var receiver = await WebhookReceiver.StartAsync();
        var port = Loopback.FreePort();
        var directory = Directory.CreateTempSubdirectory("te-readme-").FullName;
        var path = Path.Combine(directory, "triggerevents.yaml");
        var subscription = Blocks("yaml")[0];
        Assert.That(subscription, Does.Contain("billing-orders"));
        await File.WriteAllTextAsync(path, subscription + $"worker:\n  http_port: {port}\n  poll_interval: 200ms\n");
        await using var worker = WorkerProcess.Start(database.ConnectionString, path, port, new Dictionary<string, string?>
        {
            ["BILLING_URL"] = receiver.Url().ToString(),
            ["BILLING_TOKEN"] = "t0ken",
            ["BILLING_SECRET"] = Secret,
        });
        await worker.WaitUntilReadyAsync();

        await database.ExecuteAsync("INSERT INTO orders VALUES (7, 'new')");
        var writersTransaction = Blocks("sql").Single(b => b.Contains("SET LOCAL trigger_events.session", StringComparison.Ordinal));
        await database.ExecuteAsync(writersTransaction);
        var invoked = await cli.RunAsync("invoke", "--trigger", "orders_changed", "--payload", """{"id": 7}""");
        Assert.That(invoked.ExitCode, Is.Zero, invoked.ToString());
        await receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 3, TimeSpan.FromSeconds(60), "3 deliveries");
        Directory.Delete(directory, recursive: true);

        var requests = receiver.Requests.Where(r => r.Succeeded).OrderBy(r => r.EventId).ToList();
        var operations = requests.Select(r => JsonDocument.Parse(r.BodyText).RootElement.GetProperty("event").GetProperty("op").GetString());
        Assert.That(operations, Is.EqualTo(new[] { "INSERT", "UPDATE", "MANUAL" }), worker.Output);
        using var update = JsonDocument.Parse(requests[1].BodyText);
        Assert.That(update.RootElement.GetProperty("event").GetProperty("session_variables").GetProperty("x-user-id").GetString(), Is.EqualTo("42"));
        Assert.That(Header(requests[1], "traceparent"), Does.StartWith("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        foreach (var request in requests)
        {
            Assert.That(Header(request, "Authorization"), Is.EqualTo("Bearer t0ken"));
            Assert.That(
                WebhookSigner.Verify(request.WebhookId, Header(request, "webhook-timestamp"), request.Body, Header(request, "webhook-signature"), [Secret], DateTimeOffset.UtcNow),
                Is.EqualTo(WebhookVerification.Valid));
        }
    }

    private static string? Header(ReceivedRequest request, string name) =>
        request.Headers.FirstOrDefault(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

    [GeneratedRegex(@"^```(\w+)\n(.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex Fenced();
}
