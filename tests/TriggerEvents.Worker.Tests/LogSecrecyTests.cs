using System.Security.Cryptography;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>SPEC "Worker", logs: no secret, header value or signing key is ever logged.</summary>
public sealed class LogSecrecyTests
{
    [Test]
    public async Task No_secret_or_header_value_appears_in_the_worker_output_even_when_every_kind_of_delivery_fails()
    {
        var secrets = new[] { NewSecret(), NewSecret() };
        var token = "tok-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(12));
        var apiKey = "key-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(12));
        var headers = new Dictionary<string, string> { ["Authorization"] = $"Bearer {token}", ["X-Api-Key"] = apiKey };
        await using var harness = await DeliveryHarness.CreateAsync();
        using var port = new ClosedPort();
        Hook Failing(string name, Uri url) => new(name, url)
        {
            SigningSecret = string.Join(' ', secrets), Headers = headers, MaxAttempts = 2,
        };

        // Each subscription fails differently; the receiver echoes what it got into its error
        // bodies, as some frameworks' error pages do.
        var hooks = new[]
        {
            Failing("server-error", harness.Receiver.Url("/server-error")),
            Failing("gone", harness.Receiver.Url("/gone")),
            Failing("redirect", harness.Receiver.Url("/redirect")),
            Failing("slow", harness.Receiver.Url("/slow")) with { Timeout = "500ms" },
            Failing("refused", port.Url()),
        };
        harness.Receiver.Respond = r =>
        {
            var echo = string.Join('\n', r.Headers.Select(h => $"{h.Key}: {h.Value}"));
            return r.Path switch
            {
                "/server-error" => new ReceiverResponse(500, Body: echo),
                "/gone" => new ReceiverResponse(410, Body: echo),
                "/redirect" => new ReceiverResponse(302, Headers: new Dictionary<string, string> { ["Location"] = $"/moved?token={token}" }, Body: echo),
                _ => new ReceiverResponse(200, Delay: TimeSpan.FromSeconds(10)),
            };
        };
        var worker = await harness.StartWorkerAsync(hooks);

        await harness.InsertOrdersAsync(1, 2);
        await harness.WaitUntilSettledAsync(10);
        await harness.AssertLedgerAsync(delivered: 0, dead: 10);
        Assert.That(await worker.TerminateAsync(), Is.Zero);

        var output = worker.Output;
        Assert.That(output, Does.Contain("failed on attempt"), "the failures were logged");
        string[] neverLogged =
        [
            .. secrets,
            .. secrets.Select(s => s["whsec_".Length..]),
            .. secrets.Select(s => Convert.ToHexString(Convert.FromBase64String(s["whsec_".Length..]))),
            token,
            apiKey,
        ];
        foreach (var value in neverLogged)
        {
            Assert.That(output, Does.Not.Contain(value).IgnoreCase);
        }
    }

    [Test]
    public async Task A_configuration_error_names_no_secret_or_header_value()
    {
        var good = NewSecret();
        var malformed = "whsec_" + Convert.ToHexString(RandomNumberGenerator.GetBytes(12)) + "!";
        var token = "tok-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(12));
        var file = Path.Combine(Path.GetTempPath(), $"te-secrecy-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(file, $"""
            subscriptions:
              - name: orders-hook
                trigger: orders_changed
                webhook:
                  url: http://127.0.0.1:9/hook
                  signing_secret: "{good} {malformed}"
                  headers:
                    Authorization: "Bearer {token}"
                    X-Broken: "café {token}"
            """);
        try
        {
            var (exitCode, stdout, stderr) = await WorkerProcess.RunToEndAsync(
                new Dictionary<string, string?> { ["TRIGGER_EVENTS_DATABASE_URL"] = "postgres://nobody@127.0.0.1:9/none" },
                "run", "--config", file);

            Assert.That(exitCode, Is.EqualTo(2), stdout + stderr);
            Assert.That(stderr, Does.Contain("signing_secret").And.Contain("X-Broken"), "the errors name the keys");
            foreach (var value in new[] { good, good["whsec_".Length..], malformed, malformed["whsec_".Length..], token })
            {
                Assert.That(stdout + stderr, Does.Not.Contain(value));
            }
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static string NewSecret() => "whsec_" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
}
