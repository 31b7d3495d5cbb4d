using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary>
/// The worker's OpenTelemetry spans of delivery attempts, exported by the real executable over
/// OTLP/HTTP to a collector in the test, and the <c>traceparent</c> its requests carry.
/// </summary>
public sealed class TracingTests
{
    private const string WriterTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
    private const string WriterSpan = "00f067aa0ba902b7";
    private const string WriterTraceParent = $"00-{WriterTrace}-{WriterSpan}-01";
    private const string RetriedTrace = "0af7651916cd43dd8448eb211c80319c";
    private const string RetriedSpan = "b7ad6b7169203331";
    private const string RetriedTraceParent = $"00-{RetriedTrace}-{RetriedSpan}-01";
    private const string UnsampledTrace = "7d2b1a4e9c3f5a6b8c9d0e1f2a3b4c5d";
    private const string UnsampledTraceParent = $"00-{UnsampledTrace}-{WriterSpan}-00";

    [Test]
    public async Task Each_attempt_is_a_client_span_under_the_writers_trace_and_the_receiver_gets_that_span_as_its_parent()
    {
        await using var setup = await Setup.CreateAsync();
        // Order 2's first attempt fails, so it is sent twice.
        setup.Receiver.Respond = r => r.EventId == setup.EventIds.GetValueOrDefault(2) && r.Attempt == 1 ? new ReceiverResponse(500) : ReceiverResponse.Ok;
        await using var worker = setup.StartWorker(new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = setup.Collector.Endpoint.ToString(),
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
            ["OTEL_SERVICE_NAME"] = null,
            ["OTEL_RESOURCE_ATTRIBUTES"] = null,
        });
        await worker.WaitUntilReadyAsync();

        await setup.WriteAsync(1, WriterTraceParent);
        await setup.WriteAsync(2, RetriedTraceParent);
        await setup.WriteAsync(3, traceParent: null);
        // Not a valid traceparent (upper case): dropped, so no parent either.
        await setup.WriteAsync(4, WriterTraceParent.ToUpperInvariant());
        // A trace the writer did not sample: followed, not recorded.
        await setup.WriteAsync(5, UnsampledTraceParent);
        await setup.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 5, TimeSpan.FromSeconds(60), "5 deliveries");
        await setup.Collector.WaitUntilAsync(s => s.Count(x => x.Scope == "TriggerEvents.Delivery") >= 5, TimeSpan.FromSeconds(30), "5 attempt spans");
        var exit = await worker.TerminateAsync();

        var spans = setup.Collector.Spans.Where(s => s.Scope == "TriggerEvents.Delivery").ToList();
        var requests = setup.Receiver.Requests.ToList();
        Assert.That(exit, Is.Zero, worker.Output);
        Assert.That(worker.Output, Does.Contain($"Tracing deliveries to http://{setup.Collector.Endpoint.Authority} over OTLP http/protobuf"));
        Assert.That(setup.Collector.Rejected, Is.Empty);
        Assert.That(spans, Has.Count.EqualTo(5), "one span per attempt: 1 + 2 + 1 + 1, none of the unsampled trace");
        Assert.Multiple(() =>
        {
            foreach (var span in spans)
            {
                Assert.That(span.Kind, Is.EqualTo(OtlpSpan.ClientKind), span.Name);
                Assert.That(span.Name, Is.EqualTo("deliver hook"));
                Assert.That(span["triggerevents.subscription"], Is.EqualTo("hook"));
                Assert.That(span.Resource.GetValueOrDefault("service.name"), Is.EqualTo("triggerevents"));
                // The request of this attempt names this span as its parent, in the span's trace.
                var request = requests.Single(r => r.EventId == (long)span["triggerevents.event_id"]! && r.Attempt == (int)(long)span["triggerevents.attempt"]!);
                Assert.That(request.Headers.GetValueOrDefault("traceparent"), Is.EqualTo($"00-{span.TraceId}-{span.SpanId}-01"));
                Assert.That(span["triggerevents.webhook_id"], Is.EqualTo(request.WebhookId));
                Assert.That(span["http.response.status_code"], Is.EqualTo((long)(request.Status)));
            }

            var first = spans.Single(s => (long)s["triggerevents.event_id"]! == setup.EventIds[1]);
            Assert.That((first.TraceId, first.ParentSpanId), Is.EqualTo((WriterTrace, WriterSpan)), "a child of the writer's traceparent");
            Assert.That(first.SpanId, Is.Not.EqualTo(WriterSpan));
            Assert.That(first["triggerevents.attempt"], Is.EqualTo(1L));
            Assert.That(first["triggerevents.outcome"], Is.EqualTo("delivered"));
            Assert.That(first.StatusCode, Is.Not.EqualTo(OtlpSpan.ErrorStatus));

            var retried = spans.Where(s => (long)s["triggerevents.event_id"]! == setup.EventIds[2]).OrderBy(s => (long)s["triggerevents.attempt"]!).ToList();
            Assert.That(retried.Select(s => s["triggerevents.attempt"]), Is.EqualTo(new object[] { 1L, 2L }));
            Assert.That(retried.Select(s => (s.TraceId, s.ParentSpanId)), Is.All.EqualTo((RetriedTrace, RetriedSpan)), "both attempts are children of the writer's span");
            Assert.That(retried[0].SpanId, Is.Not.EqualTo(retried[1].SpanId));
            Assert.That((retried[0].StatusCode, retried[0]["http.response.status_code"], retried[0]["triggerevents.outcome"], retried[0]["error.type"]),
                Is.EqualTo((OtlpSpan.ErrorStatus, (object)500L, (object)"retry", (object)"500")), "the failed attempt");
            Assert.That(retried[0].StatusMessage, Is.EqualTo("HTTP 500"));
            Assert.That((retried[1].StatusCode, retried[1]["triggerevents.outcome"]), Is.EqualTo((0, (object)"delivered")));

            var unsampled = requests.Single(r => r.EventId == setup.EventIds[5]).Headers.GetValueOrDefault("traceparent");
            Assert.That(unsampled, Does.Match($"^00-{UnsampledTrace}-[0-9a-f]{{16}}-00$"));
            Assert.That(unsampled, Is.Not.EqualTo(UnsampledTraceParent), "a span of its own, not the writer's");
            Assert.That(spans.Where(s => s.TraceId == UnsampledTrace), Is.Empty);

            foreach (var order in new[] { 3, 4 })
            {
                var root = spans.Single(s => (long)s["triggerevents.event_id"]! == setup.EventIds[order]);
                Assert.That(root.ParentSpanId, Is.Null, $"order {order}: no valid writer's trace, a root span");
                Assert.That(root.TraceId, Is.Not.EqualTo(WriterTrace).And.Not.EqualTo(RetriedTrace));
            }
        });
    }

    [Test]
    public async Task The_default_protocol_is_grpc_and_OTEL_SERVICE_NAME_names_the_service()
    {
        await using var setup = await Setup.CreateAsync(grpc: true);
        await using var worker = setup.StartWorker(new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = setup.Collector.Endpoint.ToString(),
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = null,
            ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = null,
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
            ["OTEL_SERVICE_NAME"] = "billing-worker",
        });
        await worker.WaitUntilReadyAsync();

        await setup.WriteAsync(1, WriterTraceParent);
        await setup.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 1, TimeSpan.FromSeconds(60), "the delivery");
        await setup.Collector.WaitUntilAsync(s => s.Any(x => x.Scope == "TriggerEvents.Delivery"), TimeSpan.FromSeconds(30), "the attempt's span over gRPC");
        Assert.That(await worker.TerminateAsync(), Is.Zero, worker.Output);

        var span = setup.Collector.Spans.Single(s => s.Scope == "TriggerEvents.Delivery");
        var request = setup.Receiver.Requests.Single();
        Assert.Multiple(() =>
        {
            Assert.That(worker.Output, Does.Contain("over OTLP grpc"));
            Assert.That(setup.Collector.Rejected, Is.Empty);
            Assert.That(span.Resource.GetValueOrDefault("service.name"), Is.EqualTo("billing-worker"));
            Assert.That((span.TraceId, span.ParentSpanId), Is.EqualTo((WriterTrace, WriterSpan)));
            Assert.That(span["triggerevents.event_id"], Is.EqualTo(setup.EventIds[1]));
            Assert.That(request.Headers.GetValueOrDefault("traceparent"), Is.EqualTo($"00-{WriterTrace}-{span.SpanId}-01"));
        });
    }

    [Test]
    public async Task The_traces_endpoint_and_protocol_variables_alone_are_enough()
    {
        await using var setup = await Setup.CreateAsync();
        await using var worker = setup.StartWorker(new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = null,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = null,
            // The full URL: the exporter adds nothing to a signal's own endpoint.
            ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = new Uri(setup.Collector.Endpoint, "v1/traces").ToString(),
            ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
        });
        await worker.WaitUntilReadyAsync();

        await setup.WriteAsync(1, WriterTraceParent);
        await setup.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 1, TimeSpan.FromSeconds(60), "the delivery");
        await setup.Collector.WaitUntilAsync(s => s.Any(x => x.Scope == "TriggerEvents.Delivery"), TimeSpan.FromSeconds(30), "the attempt's span");
        Assert.That(await worker.TerminateAsync(), Is.Zero, worker.Output);

        var span = setup.Collector.Spans.Single(s => s.Scope == "TriggerEvents.Delivery");
        Assert.That(setup.Collector.Rejected, Is.Empty);
        Assert.That((span.TraceId, span.ParentSpanId), Is.EqualTo((WriterTrace, WriterSpan)));
        Assert.That(setup.Receiver.Requests.Single().Headers.GetValueOrDefault("traceparent"), Is.EqualTo($"00-{WriterTrace}-{span.SpanId}-01"));
    }

    [Test]
    public async Task Without_an_endpoint_the_writers_traceparent_goes_on_unchanged_and_with_the_sdk_disabled_nothing_is_exported()
    {
        await using var setup = await Setup.CreateAsync();
        // No endpoint at all, the other variables set as a deployment might leave them.
        await using (var worker = setup.StartWorker(new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = null,
            ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = null,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
        }))
        {
            await worker.WaitUntilReadyAsync();
            await setup.WriteAsync(1, WriterTraceParent);
            await setup.WriteAsync(2, traceParent: null);
            await setup.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 2, TimeSpan.FromSeconds(60), "2 deliveries");
            Assert.That(await worker.TerminateAsync(), Is.Zero, worker.Output);
            Assert.That(worker.Output, Does.Not.Contain("Tracing deliveries"));
        }

        // The collector's endpoint given, but OTEL_SDK_DISABLED: the exit flushes nothing either.
        await using (var worker = setup.StartWorker(new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = setup.Collector.Endpoint.ToString(),
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
            ["OTEL_SDK_DISABLED"] = "true",
        }))
        {
            await worker.WaitUntilReadyAsync();
            await setup.WriteAsync(3, RetriedTraceParent);
            await setup.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 3, TimeSpan.FromSeconds(60), "the third delivery");
            Assert.That(await worker.TerminateAsync(), Is.Zero, worker.Output);
        }

        var headers = setup.Receiver.Requests.ToDictionary(r => r.EventId!.Value, r => r.Headers.GetValueOrDefault("traceparent"));
        Assert.Multiple(() =>
        {
            Assert.That(headers[setup.EventIds[1]], Is.EqualTo(WriterTraceParent), "the writer's, unchanged");
            Assert.That(headers[setup.EventIds[2]], Is.Null, "none without the writer's");
            Assert.That(headers[setup.EventIds[3]], Is.EqualTo(RetriedTraceParent));
            Assert.That(setup.Collector.Exports, Is.Zero, "nothing exported");
        });
    }

    [Test]
    public async Task A_batch_is_one_span_named_by_the_batchs_webhook_id()
    {
        await using var setup = await Setup.CreateAsync(subscriptionKey: "batch: {max_events: 3, max_wait: 5s}");
        await using var worker = setup.StartWorker(new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = setup.Collector.Endpoint.ToString(),
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
        });
        await worker.WaitUntilReadyAsync();

        // Three events in one transaction: one full batch, one request.
        await setup.Database.ExecuteAsync("INSERT INTO orders (id) SELECT generate_series(1, 3)");
        await setup.Receiver.WaitUntilAsync(r => r.Requests.Any(x => x.Succeeded), TimeSpan.FromSeconds(60), "the batch");
        await setup.Collector.WaitUntilAsync(s => s.Any(x => x.Scope == "TriggerEvents.Delivery"), TimeSpan.FromSeconds(30), "the batch's span");
        Assert.That(await worker.TerminateAsync(), Is.Zero, worker.Output);

        var first = await setup.Database.ScalarAsync<long>("SELECT min(id) FROM trigger_events.event_log");
        var span = setup.Collector.Spans.Single(s => s.Scope == "TriggerEvents.Delivery");
        var request = setup.Receiver.Requests.Single();
        Assert.Multiple(() =>
        {
            Assert.That(request.WebhookId, Is.EqualTo($"msg_hook_b{first}_3"));
            Assert.That(span["triggerevents.webhook_id"], Is.EqualTo(request.WebhookId));
            Assert.That(span["triggerevents.batch.size"], Is.EqualTo(3));
            Assert.That(span["triggerevents.event_id"], Is.EqualTo(first), "the batch's first event");
            Assert.That(request.Headers.GetValueOrDefault("traceparent"), Is.EqualTo($"00-{span.TraceId}-{span.SpanId}-01"));
        });
    }

    [TestCase("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL of an OpenTelemetry collector, not 'collector:4318'")]
    [TestCase("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf (the OTLP protocols the worker's exporter speaks), not 'http/json'")]
    public async Task A_tracing_setting_the_exporter_cannot_use_stops_the_worker_at_start_with_exit_2(string variable, string value, string message)
    {
        await using var setup = await Setup.CreateAsync();
        var environment = new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4318",
            ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = null,
            ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = null,
            ["OTEL_SDK_DISABLED"] = null,
            [variable] = value,
        };

        var result = await new Cli(setup.Database.WorkerConnectionString).RunWithAsync(environment, "run", "--config", setup.ConfigPath);

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        Assert.That(result.Error.Trim(), Is.EqualTo("triggerevents: " + message));
    }

    /// <summary>A database with <c>orders</c> attached, a receiver, a collector and the worker's configuration.</summary>
    private sealed class Setup : IAsyncDisposable
    {
        private Setup(TestDatabase database, WebhookReceiver receiver, OtlpCollector collector, int port, string configPath)
        {
            Database = database;
            Receiver = receiver;
            Collector = collector;
            Port = port;
            ConfigPath = configPath;
        }

        public TestDatabase Database { get; }

        public WebhookReceiver Receiver { get; }

        public OtlpCollector Collector { get; }

        public int Port { get; }

        public string ConfigPath { get; }

        /// <summary>Event id by order id, as <see cref="WriteAsync"/> captured them.</summary>
        public System.Collections.Concurrent.ConcurrentDictionary<int, long> EventIds { get; } = new();

        /// <param name="grpc">The collector speaks OTLP/gRPC rather than OTLP/HTTP.</param>
        /// <param name="subscriptionKey">One more key of the subscription, on one line (a batch).</param>
        public static async Task<Setup> CreateAsync(bool grpc = false, string subscriptionKey = "")
        {
            var database = await TestDatabase.CreateAsync();
            await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
            await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
            var receiver = await WebhookReceiver.StartAsync();
            var collector = await OtlpCollector.StartAsync(grpc);
            var port = Loopback.FreePort();
            var path = Path.Combine(Path.GetTempPath(), $"{Guid.NewGuid():N}.yaml");
            await File.WriteAllTextAsync(path, $"""
                subscriptions:
                  - name: hook
                    trigger: orders_changed
                    webhook:
                      url: {receiver.Url()}
                    retry:
                      initial_interval: 100ms
                      max_interval: 200ms
                    {subscriptionKey}
                worker:
                  http_port: {port}
                  poll_interval: 100ms
                """);
            return new Setup(database, receiver, collector, port, path);
        }

        public WorkerProcess StartWorker(Dictionary<string, string?> environment) =>
            WorkerProcess.Start(Database.WorkerConnectionString, ConfigPath, Port, environment);

        /// <summary>Inserts order <paramref name="id"/> in a transaction that sets <paramref name="traceParent"/> (none when null).</summary>
        public async Task WriteAsync(int id, string? traceParent)
        {
            await using var connection = await Database.DataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            if (traceParent is not null)
            {
                await using var set = new Npgsql.NpgsqlCommand("SELECT set_config('trigger_events.traceparent', $1, true)", connection, transaction);
                set.Parameters.Add(new Npgsql.NpgsqlParameter { Value = traceParent });
                await set.ExecuteNonQueryAsync();
            }

            await using (var insert = new Npgsql.NpgsqlCommand("INSERT INTO orders (id) VALUES ($1)", connection, transaction))
            {
                insert.Parameters.Add(new Npgsql.NpgsqlParameter { Value = id });
                await insert.ExecuteNonQueryAsync();
            }

            await using (var select = new Npgsql.NpgsqlCommand("SELECT max(id) FROM trigger_events.event_log", connection, transaction))
            {
                EventIds[id] = (long)(await select.ExecuteScalarAsync())!;
            }

            await transaction.CommitAsync();
        }

        public async ValueTask DisposeAsync()
        {
            File.Delete(ConfigPath);
            await Collector.DisposeAsync();
            await Receiver.DisposeAsync();
            await Database.DisposeAsync();
        }
    }
}
