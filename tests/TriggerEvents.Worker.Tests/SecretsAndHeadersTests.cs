using System.Security.Cryptography;
using System.Text.Json;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SPEC "Roles and secrets": what the worker keeps of responses, what it
/// forwards of a writer's <c>traceparent</c>, and <c>worker.deny_private_networks</c>. Every
/// request here goes to 127.0.0.1.
/// </summary>
public sealed class SecretsAndHeadersTests
{
    [Test]
    public async Task An_echoing_receiver_never_makes_a_delivery_store_the_credentials_the_worker_sent()
    {
        var token = "tok-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(12));
        var apiKey = "key-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(12));
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with
        {
            MaxAttempts = 3,
            SigningSecret = "whsec_" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)),
            Headers = new Dictionary<string, string> { ["Authorization"] = $"Bearer {token}", ["X-Custom"] = apiKey },
        };

        // Like the compose sample's receiver: every answer echoes the request's headers, as a
        // header dump on failures and as JSON on success.
        harness.Receiver.Respond = r =>
        {
            var dump = string.Join('\n', r.Headers.Select(h => $"{h.Key}: {h.Value}"));
            var json = JsonSerializer.Serialize(r.Headers, TestJson.Default.IReadOnlyDictionaryStringString);
            return r.Attempt switch
            {
                1 => new ReceiverResponse(500, Body: dump),
                2 => new ReceiverResponse(503, Body: json),
                _ => new ReceiverResponse(200, Body: json),
            };
        };
        await harness.StartWorkerAsync(hook);

        await harness.InsertOrdersAsync(1, 3);
        await harness.WaitUntilSettledAsync(3);
        await harness.AssertLedgerAsync(delivered: 3, dead: 0);

        var attempts = await harness.AttemptsAsync();
        Assert.That(harness.Receiver.Requests.Select(r => r.Headers["authorization"]), Is.All.EqualTo($"Bearer {token}"), "the receiver did get them");
        Assert.Multiple(() =>
        {
            Assert.That(attempts.Where(a => a.Attempt == 1).Select(a => a.ResponseExcerpt), Has.All.Contain("authorization: [redacted]").And.All.Contain("x-custom: [redacted]"));
            Assert.That(attempts.Where(a => a.Attempt == 2).Select(a => a.ResponseExcerpt), Has.All.Contain("\"authorization\":\"[redacted]\"").And.All.Contain("\"x-custom\":\"[redacted]\""));
            Assert.That(attempts.Where(a => a.Attempt < 3).Select(a => a.ResponseExcerpt), Has.All.Contain("webhook-id"), "the rest of the echo is kept");
            Assert.That(attempts.Where(a => a.Attempt == 3).Select(a => a.ResponseExcerpt), Is.All.Null, "a success keeps no body");
        });

        // Nothing anywhere in the schema holds them: the attempt log, the deliveries' last error.
        var stored = await harness.Database.ScalarAsync<long>(
            "SELECT count(*) FROM trigger_events.attempts a WHERE a::text ILIKE '%' || $1 || '%' OR a::text ILIKE '%' || $2 || '%'",
            token, apiKey);
        var inDeliveries = await harness.Database.ScalarAsync<long>(
            "SELECT count(*) FROM trigger_events.deliveries d WHERE d::text ILIKE '%' || $1 || '%' OR d::text ILIKE '%' || $2 || '%'",
            token, apiKey);
        Assert.That((stored, inDeliveries), Is.EqualTo((0L, 0L)));
    }

    [Test]
    public async Task A_malformed_traceparent_is_dropped_and_never_fails_an_attempt()
    {
        const string valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        // Order id → what its writer set. Non-ASCII and multi-line values failed every attempt of
        // their event before (the request could not be sent); the others were forwarded as written.
        var written = new Dictionary<int, string>
        {
            [1] = valid,
            [2] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bé-01",
            [3] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\nX-Injected: yes",
            [4] = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            [5] = "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            [6] = "not a traceparent at all",
            [7] = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later-fields",
        };
        await using var harness = await DeliveryHarness.CreateAsync();
        var hook = harness.Hook("orders-hook") with { MaxAttempts = 3 };
        await harness.StartWorkerAsync(hook);

        foreach (var (id, traceparent) in written)
        {
            await using var connection = await harness.Database.DataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            await using (var set = new Npgsql.NpgsqlCommand("SELECT set_config('trigger_events.traceparent', $1, true)", connection, transaction))
            {
                set.Parameters.Add(new Npgsql.NpgsqlParameter { Value = traceparent });
                await set.ExecuteNonQueryAsync();
            }

            await using (var insert = new Npgsql.NpgsqlCommand($"INSERT INTO orders (id) VALUES ({id})", connection, transaction))
            {
                await insert.ExecuteNonQueryAsync();
            }

            await transaction.CommitAsync();
        }

        var deliveries = await harness.WaitUntilSettledAsync(written.Count);

        Assert.That(deliveries.Select(d => (d.Status, d.Attempts)), Is.All.EqualTo(("delivered", 1)), "no attempt failed");
        await harness.AssertLedgerAsync(delivered: written.Count, dead: 0);
        var received = harness.Receiver.Requests.ToDictionary(r => JsonDocument.Parse(r.BodyText).RootElement.GetProperty("event").GetProperty("data").GetProperty("new").GetProperty("id").GetInt32());
        var forwarded = received.ToDictionary(r => r.Key, r => r.Value.Headers.GetValueOrDefault("traceparent"));
        var context = received.ToDictionary(r => r.Key, r => JsonDocument.Parse(r.Value.BodyText).RootElement.GetProperty("event").GetProperty("trace_context"));
        Assert.Multiple(() =>
        {
            Assert.That(forwarded[1], Is.EqualTo(valid));
            Assert.That(context[1].GetProperty("traceparent").GetString(), Is.EqualTo(valid));
            Assert.That(forwarded[7], Is.EqualTo(valid), "a later version goes on as version 00");
            Assert.That(context[7].GetProperty("traceparent").GetString(), Is.EqualTo(valid));
            foreach (var id in new[] { 2, 3, 4, 5, 6 })
            {
                Assert.That(forwarded[id], Is.Null, $"order {id}: no traceparent header");
                Assert.That(context[id].ValueKind, Is.EqualTo(JsonValueKind.Null), $"order {id}: trace_context is null");
                Assert.That(received[id].Headers.ContainsKey("x-injected"), Is.False);
            }
        });
    }

    [Test]
    public async Task With_deny_private_networks_a_loopback_receiver_gets_nothing_and_the_delivery_is_dead_at_once()
    {
        await using var harness = await DeliveryHarness.CreateAsync();
        harness.WorkerYaml = "  deny_private_networks: true\n";
        var byAddress = harness.Hook("by-address") with { MaxAttempts = 5 };
        // A name, resolved by the worker as it connects: judged by the address it resolves to.
        var byName = new Hook("by-name", new Uri($"http://localhost:{harness.Receiver.BaseUrl.Port}/hook")) { MaxAttempts = 5 };
        var worker = await harness.StartWorkerAsync(byAddress, byName);

        await harness.InsertOrdersAsync(1, 2);
        var deliveries = await harness.WaitUntilSettledAsync(4);

        Assert.That(harness.Receiver.Requests, Is.Empty, "the receiver got nothing");
        Assert.That(deliveries.Select(d => (d.Status, d.Attempts, d.LastStatus)), Is.All.EqualTo(("dead", 1, (int?)null)), "dead at once, not retried");
        Assert.That(
            deliveries.Where(d => d.Subscription == "by-address").Select(d => d.LastError),
            Is.All.EqualTo("refused: destination 127.0.0.1 is a private address and worker.deny_private_networks is on; not retried"));
        Assert.That(
            deliveries.Where(d => d.Subscription == "by-name").Select(d => d.LastError),
            Is.All.Match(@"^refused: destination localhost \((127\.0\.0\.1|::1)\) is a private address and worker\.deny_private_networks is on; not retried$"));
        Assert.That((await harness.AttemptsAsync()).Select(a => a.Error), Has.All.Contain("is a private address and worker.deny_private_networks is on"));
        await harness.AssertLedgerAsync(delivered: 0, dead: 4);
        Assert.That(worker.Output, Does.Contain("worker.deny_private_networks is on"));

        var (exitCode, stdout, stderr) = await WorkerProcess.RunToEndAsync(
            new Dictionary<string, string?> { ["TRIGGER_EVENTS_DATABASE_URL"] = harness.Scenario.DatabaseUrl },
            "dead", "list", "--subscription", "by-address", "--json");
        Assert.That(exitCode, Is.Zero, stdout + stderr);
        using var dead = JsonDocument.Parse(stdout);
        Assert.That(
            dead.RootElement.EnumerateArray().Select(d => d.GetProperty("last_error").GetString()),
            Is.All.EqualTo("refused: destination 127.0.0.1 is a private address and worker.deny_private_networks is on; not retried"));
    }

    [Test]
    public async Task Without_deny_private_networks_a_loopback_receiver_is_called()
    {
        // The default: any URL the file names is called, private addresses included (README).
        await using var harness = await DeliveryHarness.CreateAsync();
        harness.WorkerYaml = "  deny_private_networks: false\n";
        await harness.StartWorkerAsync(harness.Hook("orders-hook"));

        await harness.InsertOrdersAsync(1, 2);
        await harness.WaitUntilSettledAsync(2);

        await harness.AssertLedgerAsync(delivered: 2, dead: 0);
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(IReadOnlyDictionary<string, string>))]
internal sealed partial class TestJson : System.Text.Json.Serialization.JsonSerializerContext;
