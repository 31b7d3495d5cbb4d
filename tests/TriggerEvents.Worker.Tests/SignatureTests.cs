using System.ComponentModel;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SPEC "Webhook request": Standard Webhooks signatures, checked by the specification's own
/// library (the <c>standardwebhooks</c> npm package, run by <c>tests/receivers/verify.mjs</c>)
/// rather than by the C# code that made them.
/// </summary>
public sealed class SignatureTests
{
    [Test]
    public async Task Every_rotated_secret_signs_and_each_verifies_with_the_standard_webhooks_library()
    {
        var old = NewSecret();
        var next = NewSecret();
        var stranger = NewSecret();
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with { SigningSecret = $"{old} {next}", MaxAttempts = 3 };

        // A retry is signed again, with its own timestamp.
        harness.Receiver.Respond = r => r.Attempt == 1 ? new ReceiverResponse(500) : ReceiverResponse.Ok;
        await harness.StartWorkerAsync(hook);

        // Bodies with multi-byte characters, escapes and a newline: the signature covers the exact bytes.
        await harness.Database.ExecuteAsync(
            "INSERT INTO orders (id, status, amount) VALUES (1, $1, 1.5), (2, $2, NULL), (3, DEFAULT, 3)",
            "café ✓ 日本語 \"quoted\" back\\slash", "emoji 🎉 </script> & 'single'\nsecond line");
        await harness.WaitUntilSettledAsync(3);
        await harness.AssertLedgerAsync(delivered: 3, dead: 0);

        var signed = harness.Receiver.Requests.Select(r => new SignedRequest(
            r.WebhookId, r.Headers["webhook-timestamp"], r.Headers["webhook-signature"], r.Body)).ToList();
        Assert.That(signed, Has.Count.EqualTo(6));
        Assert.That(signed.Select(s => s.Signature.Split(' ').Length), Is.All.EqualTo(2), "one signature per secret");
        Assert.That(signed.SelectMany(s => s.Signature.Split(' ')), Is.All.StartWith("v1,"));

        var secrets = new[] { old, next, stranger };
        var asSent = await VerifyAsync(signed, secrets);
        var oldOnly = await VerifyAsync([.. signed.Select(s => s with { Signature = s.Signature.Split(' ')[0] })], secrets);
        var nextOnly = await VerifyAsync([.. signed.Select(s => s with { Signature = s.Signature.Split(' ')[1] })], secrets);
        var tampered = await VerifyAsync([.. signed.Select(s => s with { Body = [.. s.Body, (byte)' '] })], secrets);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(asSent, Is.All.EqualTo("old: valid, next: valid, stranger: No matching signature found"));
            Assert.That(oldOnly, Is.All.EqualTo("old: valid, next: No matching signature found, stranger: No matching signature found"));
            Assert.That(nextOnly, Is.All.EqualTo("old: No matching signature found, next: valid, stranger: No matching signature found"));
            Assert.That(tampered, Is.All.EqualTo("old: No matching signature found, next: No matching signature found, stranger: No matching signature found"));
        }
    }

    [Test]
    public async Task Without_a_signing_secret_no_signature_is_sent()
    {
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook");
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 2);
        await harness.WaitUntilSettledAsync(2);
        await harness.AssertLedgerAsync(delivered: 2, dead: 0);

        Assert.That(harness.Receiver.Requests.Select(r => r.Headers.ContainsKey("webhook-signature")), Is.All.False);
        Assert.That(harness.Receiver.Requests.Select(r => r.Headers.ContainsKey("webhook-id") && r.Headers.ContainsKey("webhook-timestamp")), Is.All.True);
    }

    internal static string NewSecret() => "whsec_" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    /// <summary>
    /// Runs <c>tests/receivers/verify.mjs</c> on <paramref name="requests"/>: per request, one
    /// "name: valid" or "name: error" per secret, named old, next and stranger in that order.
    /// </summary>
    internal static async Task<IReadOnlyList<string>> VerifyAsync(IReadOnlyList<SignedRequest> requests, IReadOnlyList<string> secrets)
    {
        string[] names = ["old", "next", "stranger"];
        var receivers = Path.Combine(RepositoryRoot(), "tests", "receivers");
        if (!File.Exists(Path.Combine(receivers, "node_modules", "standardwebhooks", "package.json")))
        {
            Assert.Fail($"The standardwebhooks npm package is not installed: with Node.js 18 or later, run 'npm ci' in {receivers} (scripts/test.sh does).");
        }

        var start = new ProcessStartInfo("node")
        {
            WorkingDirectory = receivers,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("verify.mjs");
        foreach (var secret in secrets)
        {
            start.ArgumentList.Add(secret);
        }

        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (Win32Exception e)
        {
            Assert.Fail($"Node.js is needed to verify signatures with the standardwebhooks package, and 'node' could not be started: {e.Message}");
            throw;
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            var input = requests.Select(r => new { id = r.Id, timestamp = r.Timestamp, signature = r.Signature, body = Convert.ToBase64String(r.Body) });
            await process.StandardInput.WriteAsync(JsonSerializer.Serialize(input));
            process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
            await process.WaitForExitAsync(timeout.Token);
            if (process.ExitCode != 0)
            {
                Assert.Fail($"node verify.mjs exited with {process.ExitCode}: {await stderr}");
            }

            using var output = JsonDocument.Parse(await stdout);
            return
            [
                .. output.RootElement.EnumerateArray().Select(request => string.Join(", ", request.GetProperty("results").EnumerateArray().Select((result, i) =>
                    $"{names[i]}: {(result.ValueKind == JsonValueKind.True ? "valid" : result.GetString())}"))),
            ];
        }
    }

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "TriggerEvents.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Cannot find the repository root above " + AppContext.BaseDirectory);
    }

    internal sealed record SignedRequest(string Id, string Timestamp, string Signature, byte[] Body);
}
