using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// <c>batch</c> end to end with the real executable and a real receiver (SPEC "Batches", "Webhook
/// request"): the batch body, one signature the Standard Webhooks library verifies, retries as the
/// same batch under the same webhook-id, 410, timeouts, <c>max_wait</c> for a trickle, an
/// oversized event left out, and per-key order with <c>ordering: key</c>.
/// </summary>
public sealed class BatchTests
{
    /// <summary>The keys of the single-event body (SPEC "Webhook request"), which every element has.</summary>
    private static readonly string[] EventBodyKeys = ["created_at", "delivery_info", "event", "id", "table", "trigger"];

    /// <summary>A batch request as the receiver got it.</summary>
    private sealed record Batch(ReceivedRequest Request, int Size, IReadOnlyList<JsonElement> Events)
    {
        public List<long> EventIds => [.. Events.Select(e => long.Parse(e.GetProperty("id").GetString()!, CultureInfo.InvariantCulture))];
    }

    private static Batch Parse(ReceivedRequest request)
    {
        using var json = JsonDocument.Parse(request.Body);
        var root = json.RootElement;
        Assert.That(root.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "batch", "events" }), request.BodyText);
        Assert.That(root.GetProperty("batch").EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "size" }), request.BodyText);
        return new Batch(request, root.GetProperty("batch").GetProperty("size").GetInt32(), [.. root.GetProperty("events").EnumerateArray().Select(e => e.Clone())]);
    }

    private static List<Batch> Batches(FaultScenario scenario) => [.. scenario.Receiver.Arrivals.Select(Parse)];

    /// <summary>Starts a worker whose subscription has <paramref name="subscriptionYaml"/> (indented four spaces) and a signing secret.</summary>
    private static async Task<WorkerProcess> StartAsync(
        FaultScenario scenario, string subscriptionYaml, string secret = "", string timeout = "5s", int maxAttempts = 10, string pollInterval = "200ms")
    {
        var port = Loopback.FreePort();
        var file = Path.Combine(scenario.Directory, $"{Guid.NewGuid():N}.yaml");
        var signing = secret.Length > 0 ? $"\n      signing_secret: {secret}" : "";
        await File.WriteAllTextAsync(file, $"""
            subscriptions:
              - name: orders-hook
                trigger: {FaultScenario.Trigger}
                webhook:
                  url: {scenario.Receiver.Url()}
                  timeout: {timeout}{signing}
                retry:
                  max_attempts: {maxAttempts}
                  initial_interval: 100ms
                  max_interval: 300ms
            {subscriptionYaml}
            worker:
              http_port: {port}
              poll_interval: {pollInterval}
              lease: 10s
            """);
        var worker = WorkerProcess.Start(scenario.WorkerConnectionString, file, port);
        await worker.WaitUntilReadyAsync(TimeSpan.FromSeconds(120));
        return worker;
    }

    private static async Task<List<long>> EventIdsAsync(FaultScenario scenario)
    {
        await using var command = scenario.DataSource.CreateCommand("SELECT id FROM trigger_events.event_log ORDER BY id");
        await using var reader = await command.ExecuteReaderAsync();
        var ids = new List<long>();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetInt64(0));
        }

        return ids;
    }

    /// <summary>Waits until <paramref name="count"/> deliveries are recorded as delivered and none is left.</summary>
    private static Task WaitForDeliveredAsync(FaultScenario scenario, int count) =>
        scenario.WaitForDatabaseAsync(
            async s => (await s.DeliveryStatusesAsync()) is var c && c["delivered"] == count && c["pending"] == 0 && c["in_flight"] == 0,
            TimeSpan.FromSeconds(60), $"{count} delivered");

    private static Task WaitForRequestsAsync(FaultScenario scenario, int count, string what) =>
        scenario.Receiver.WaitUntilAsync(r => r.Inner.Requests.Count >= count, TimeSpan.FromSeconds(60), what);

    [Test]
    public async Task A_batch_is_one_request_with_the_batch_body_and_one_signature_the_standard_webhooks_library_verifies()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var secret = SignatureTests.NewSecret();
        await using var worker = await StartAsync(scenario, "    batch:\n      max_events: 10\n      max_wait: 300ms", secret);

        // One transaction of five rows, with text whose bytes the signature must cover exactly.
        await scenario.ExecuteAsync("INSERT INTO orders (id, status, amount) SELECT g, 'café ✓ \"q\" ' || g, g FROM generate_series(1, 5) g");
        await WaitForDeliveredAsync(scenario, 5);

        var events = await EventIdsAsync(scenario);
        var batch = Batches(scenario).Single();
        Assert.That(batch.Size, Is.EqualTo(5));
        Assert.That(batch.EventIds, Is.EqualTo(events), "every event, in event id order");
        Assert.That(batch.Request.WebhookId, Is.EqualTo($"msg_orders-hook_b{events[0]}_5"));
        foreach (var element in batch.Events)
        {
            Assert.That(element.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal), Is.EqualTo(EventBodyKeys), "the single-event body");
            Assert.That(element.GetProperty("event").GetProperty("op").GetString(), Is.EqualTo("INSERT"));
            Assert.That(element.GetProperty("delivery_info").GetProperty("current_retry").GetInt32(), Is.Zero);
            Assert.That(element.GetProperty("delivery_info").GetProperty("max_retries").GetInt32(), Is.EqualTo(9));
        }

        Assert.That(batch.Events.Select(e => e.GetProperty("event").GetProperty("data").GetProperty("new").GetProperty("status").GetString()),
            Is.EqualTo(Enumerable.Range(1, 5).Select(i => $"café ✓ \"q\" {i}")));

        var other = SignatureTests.NewSecret();
        var signed = new SignatureTests.SignedRequest(
            batch.Request.WebhookId, batch.Request.Headers["webhook-timestamp"], batch.Request.Headers["webhook-signature"], batch.Request.Body);
        var verified = await SignatureTests.VerifyAsync([signed, signed with { Body = [.. signed.Body, (byte)' '] }], [secret, other]);
        Assert.That(verified, Is.EqualTo(new[]
        {
            "old: valid, next: No matching signature found",
            "old: No matching signature found, next: No matching signature found",
        }), "one signature of the exact body; a changed body fails");
        Assert.That(batch.Request.Headers["webhook-signature"].Split(' '), Has.Length.EqualTo(1), "one request's headers");
    }

    [Test]
    public async Task A_failing_batch_is_retried_as_the_same_events_under_the_same_webhook_id_until_it_succeeds()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        scenario.Receiver.Answer = request => request.Attempt <= 2 ? new ReceiverResponse(500) : ReceiverResponse.Ok;
        await using var worker = await StartAsync(scenario, "    batch:\n      max_events: 3\n      max_wait: 5s");

        await scenario.InsertOrdersAsync(1, 3);
        await WaitForDeliveredAsync(scenario, 3);

        var batches = Batches(scenario);
        var events = await EventIdsAsync(scenario);
        var seen = string.Join(", ", batches.Select(b => $"{b.Request.WebhookId} #{b.Request.Attempt} {b.Request.Status} at {b.Request.ReceivedAt:HH:mm:ss.fff}"));
        Assert.That(batches, Has.Count.EqualTo(3), "two failures, then the success: " + seen);
        Assert.That(batches.Select(b => b.Request.WebhookId), Is.All.EqualTo($"msg_orders-hook_b{events[0]}_3"), seen);
        Assert.That(batches.Select(b => b.EventIds), Is.All.EqualTo(events), "the same events every time");
        Assert.That(batches.Select(b => b.Events[0].GetProperty("delivery_info").GetProperty("current_retry").GetInt32()), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.That(await scenario.ScalarAsync<string>("SELECT string_agg(DISTINCT attempts::text, ',') FROM trigger_events.deliveries"), Is.EqualTo("3"),
            "each event's attempts counted once per batch request");
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.attempt_history a"), Is.EqualTo(9), "three attempts recorded for each event");
        Assert.That(
            await scenario.ScalarAsync<string>("SELECT string_agg(DISTINCT last_webhook_id, ',') FROM trigger_events.deliveries"), Is.EqualTo($"msg_orders-hook_b{events[0]}_3"),
            "the batch's success is recorded on each of its deliveries, with its webhook-id");
    }

    [Test]
    public async Task A_410_dead_letters_every_event_of_the_batch()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        scenario.Receiver.Answer = _ => new ReceiverResponse(410);
        await using var worker = await StartAsync(scenario, "    batch:\n      max_events: 4\n      max_wait: 5s");

        await scenario.InsertOrdersAsync(1, 4);
        await scenario.WaitForDatabaseAsync(
            async s => (await s.DeliveryStatusesAsync())["dead"] == 4, TimeSpan.FromSeconds(60), "all four dead");

        Assert.That(Batches(scenario).Single().Size, Is.EqualTo(4), "one request");
        Assert.That(await scenario.ScalarAsync<string>("SELECT string_agg(DISTINCT last_status::text, ',') FROM trigger_events.deliveries"), Is.EqualTo("410"));
    }

    [Test]
    public async Task A_timed_out_batch_is_sent_again_as_the_same_batch()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        scenario.Receiver.Answer = request => request.Attempt == 1 ? new ReceiverResponse(200, TimeSpan.FromSeconds(3)) : ReceiverResponse.Ok;
        await using var worker = await StartAsync(scenario, "    batch:\n      max_events: 2\n      max_wait: 5s", timeout: "1s");

        await scenario.InsertOrdersAsync(1, 2);
        await WaitForDeliveredAsync(scenario, 2);

        var batches = Batches(scenario);
        Assert.That(batches, Has.Count.EqualTo(2));
        Assert.That(batches.Select(b => b.Request.WebhookId).Distinct().Count(), Is.EqualTo(1));
        Assert.That(batches[1].EventIds, Is.EqualTo(batches[0].EventIds));
        Assert.That(await scenario.ScalarAsync<string>("SELECT string_agg(DISTINCT attempts::text, ',') FROM trigger_events.deliveries"), Is.EqualTo("2"));
    }

    [Test]
    public async Task A_trickle_is_sent_within_max_wait_and_what_arrives_meanwhile_joins_the_batch()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        await using var worker = await StartAsync(scenario, "    batch:\n      max_events: 100\n      max_wait: 1s", pollInterval: "5s");

        // One event alone: sent about max_wait after it was captured, not held for ever (nor for
        // the poll interval, which is longer).
        var started = Stopwatch.StartNew();
        await scenario.InsertOrdersAsync(1, 1);
        await WaitForRequestsAsync(scenario, 1, "the lone event");
        var alone = started.Elapsed;

        // Three more, 200 ms apart: one batch, sent within max_wait of the first.
        started.Restart();
        for (var id = 2; id <= 4; id++)
        {
            await scenario.InsertOrdersAsync(id, id);
            await Task.Delay(200);
        }

        await WaitForRequestsAsync(scenario, 2, "the trickle");
        var trickle = started.Elapsed;
        await WaitForDeliveredAsync(scenario, 4);

        var batches = Batches(scenario);
        Assert.That(batches.Select(b => b.Size), Is.EqualTo(new[] { 1, 3 }));
        Assert.That(alone, Is.GreaterThan(TimeSpan.FromMilliseconds(900)).And.LessThan(TimeSpan.FromSeconds(3)), "max_wait, then about one wait of max_wait at most");
        Assert.That(trickle, Is.GreaterThan(TimeSpan.FromMilliseconds(900)).And.LessThan(TimeSpan.FromSeconds(3)));
        TestContext.Out.WriteLine($"lone event after {alone.TotalMilliseconds:0} ms, trickle of three after {trickle.TotalMilliseconds:0} ms (max_wait 1s)");
    }

    [Test]
    public async Task An_event_over_max_event_bytes_is_dead_lettered_alone_and_the_rest_go_without_it()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        await using var worker = await StartAsync(scenario, "    max_event_bytes: 4KiB\n    batch:\n      max_events: 3\n      max_wait: 5s");

        await scenario.ExecuteAsync("INSERT INTO orders (id, status) VALUES (1, 'small'), (2, repeat('x', 10000)), (3, 'small')");
        await scenario.WaitForDatabaseAsync(
            async s => (await s.DeliveryStatusesAsync()) is var c && c["delivered"] == 2 && c["dead"] == 1, TimeSpan.FromSeconds(60), "two delivered, one dead");

        var events = await EventIdsAsync(scenario);
        var batch = Batches(scenario).Single();
        Assert.That(batch.EventIds, Is.EqualTo(new[] { events[0], events[2] }));
        Assert.That(batch.Request.WebhookId, Is.EqualTo($"msg_orders-hook_b{events[0]}_2"), "named by what it carries");
        Assert.That(await scenario.ScalarAsync<string>($"SELECT last_error FROM trigger_events.deliveries WHERE event_id = {events[1]}"),
            Does.Contain("over max_event_bytes"));
    }

    [Test]
    public async Task A_batch_over_the_targets_body_limit_is_split_until_its_parts_fit_and_an_event_too_large_alone_fails_alone()
    {
        // A receiver behind a body limit, as a proxy's (nginx answers 413 over client_max_body_size).
        const int limit = 2_000;
        await using var scenario = await FaultScenario.CreateAsync();
        scenario.Receiver.Answer = request => request.Body.Length > limit ? new ReceiverResponse(413) : ReceiverResponse.Ok;
        await using var worker = await StartAsync(scenario, "    batch:\n      max_events: 9\n      max_wait: 5s", maxAttempts: 2);

        // Nine events in one transaction, the fifth too large for the target even alone.
        await scenario.ExecuteAsync("INSERT INTO orders (id, status) SELECT g, CASE WHEN g = 5 THEN repeat('x', 3000) ELSE 'small' END FROM generate_series(1, 9) g");
        await scenario.WaitForDatabaseAsync(
            async s => (await s.DeliveryStatusesAsync()) is var c && c["delivered"] == 8 && c["dead"] == 1, TimeSpan.FromSeconds(60), "eight delivered, one dead");

        var events = await EventIdsAsync(scenario);
        var large = events[4];
        var answered = scenario.Receiver.Inner.Requests.ToList();
        var delivered = answered.Where(r => r.Succeeded).Select(r => Parse(r)).ToList();
        var seen = string.Join(", ", answered.Select(r => $"{r.WebhookId} {r.Body.Length} B {r.Status}"));
        TestContext.Out.WriteLine(seen);
        Assert.That(answered[0].WebhookId, Is.EqualTo($"msg_orders-hook_b{events[0]}_9"), "first the whole batch: " + seen);
        Assert.That(answered[0].Status, Is.EqualTo(413), seen);
        Assert.That(delivered.SelectMany(b => b.EventIds).Order(), Is.EqualTo(events.Where(id => id != large)), "every other event once: " + seen);
        Assert.That(delivered.Select(b => b.Request.Body.Length), Is.All.LessThanOrEqualTo(limit), seen);
        Assert.That(delivered.Select(b => b.Request.WebhookId).Distinct().Count(), Is.EqualTo(delivered.Count), "each part under an id of its own: " + seen);
        Assert.That(delivered.SelectMany(b => b.Events).Select(e => e.GetProperty("delivery_info").GetProperty("current_retry").GetInt32()), Is.All.Zero,
            "a split is no retry of the events");
        Assert.That(await scenario.ScalarAsync<string>("SELECT string_agg(DISTINCT attempts::text, ',') FROM trigger_events.deliveries WHERE status = 'delivered'"),
            Is.EqualTo("1"), "the refused attempts were given back");
        Assert.That(await scenario.ScalarAsync<string>($"SELECT attempts || ' ' || last_status || ' ' || last_error FROM trigger_events.deliveries WHERE event_id = {large}"),
            Does.StartWith("2 413 gave up after 2 attempts"), "refused alone: failed attempts, then dead, as any event");
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.attempts WHERE http_status = 413 AND error LIKE '%too large for the target; split into%'"),
            Is.GreaterThanOrEqualTo(9L), "every event's refused attempt logged, with the split");
    }

    [Test]
    public async Task With_ordering_each_key_keeps_commit_order_and_is_never_in_two_batches_in_flight()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var open = new ConcurrentDictionary<string, byte>();
        var overlaps = 0;
        var repeatsInOneBatch = 0;
        scenario.Receiver.Answer = request =>
        {
            var keys = Parse(request).Events.Select(KeyOf).ToList();
            if (keys.Distinct().Count() != keys.Count)
            {
                Interlocked.Increment(ref repeatsInOneBatch);
            }

            foreach (var key in keys)
            {
                if (!open.TryAdd(key, 0))
                {
                    Interlocked.Increment(ref overlaps);
                }
            }

            // Now and then a failure, so that retried batches take part.
            return Random.Shared.Next(10) == 0 ? new ReceiverResponse(500) : new ReceiverResponse(200, TimeSpan.FromMilliseconds(Random.Shared.Next(0, 20)));
        };
        scenario.Receiver.Answered = request =>
        {
            foreach (var element in Parse(request).Events)
            {
                open.TryRemove(KeyOf(element), out _);
            }
        };
        const string Yaml = "    ordering: key\n    batch:\n      max_events: 8\n      max_wait: 20ms";
        await using var first = await StartAsync(scenario, Yaml, maxAttempts: 100);
        await using var second = await StartAsync(scenario, Yaml, maxAttempts: 100);

        // 10 keys; three writers update random keys, one row per transaction.
        await scenario.ExecuteAsync("INSERT INTO orders (id, amount) SELECT g, 0 FROM generate_series(1, 10) g");
        await Task.WhenAll(Enumerable.Range(0, 3).Select(writer => Task.Run(async () =>
        {
            var random = new Random(writer);
            for (var i = 0; i < 60; i++)
            {
                await scenario.ExecuteAsync($"UPDATE orders SET amount = amount + 1 WHERE id = {random.Next(1, 11)}");
            }
        })));
        await WaitForDeliveredAsync(scenario, 190);

        // Per key, the first successful delivery of each event is in commit (event id) order.
        var delivered = scenario.Receiver.Inner.Requests.Where(r => r.Succeeded).SelectMany(r => Parse(r).Events)
            .Select(e => (Key: KeyOf(e), Id: long.Parse(e.GetProperty("id").GetString()!, CultureInfo.InvariantCulture)))
            .DistinctBy(e => e.Id).ToList();
        var batches = Batches(scenario);
        Assert.That(delivered, Has.Count.EqualTo(190));
        foreach (var key in delivered.GroupBy(e => e.Key))
        {
            Assert.That(key.Select(e => e.Id), Is.Ordered, $"key {key.Key}");
        }

        Assert.That(repeatsInOneBatch, Is.Zero, "a batch holds one event of a key");
        Assert.That(overlaps, Is.Zero, "no key in two batches in flight");
        Assert.That(batches.Max(b => b.Size), Is.GreaterThan(1), "events were batched");
        TestContext.Out.WriteLine($"{batches.Count} requests for 190 events, largest {batches.Max(b => b.Size)}; {await scenario.SummaryAsync()}");
    }

    private static string KeyOf(JsonElement element)
    {
        var data = element.GetProperty("event").GetProperty("data");
        var row = data.GetProperty("new").ValueKind == JsonValueKind.Object ? data.GetProperty("new") : data.GetProperty("old");
        return row.GetProperty("id").GetRawText();
    }
}
