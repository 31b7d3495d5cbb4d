using System.Collections.Concurrent;
using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Npgsql;
using Serilog;
using Serilog.Events;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.WebConsole;

namespace TriggerEvents.Cli.Commands;

/// <summary>
/// <c>triggerevents demo</c>: a throwaway PostgreSQL, a sample table with an event trigger, a
/// local receiver that checks signatures, and the worker with its web console, all in this
/// process; a few writes, each delivery printed as it arrives, then the status table. Everything
/// is removed on exit.
/// </summary>
internal static class DemoCommand
{
    private const int ScriptedEvents = 6;

    public static Command Create()
    {
        var wait = new Option<bool>("--wait") { Description = "Keep running after the scripted writes, printing deliveries, until Ctrl-C (the default on a terminal)." };
        var noWait = new Option<bool>("--no-wait") { Description = "Exit after the scripted writes are delivered (the default when not on a terminal)." };
        var command = new Command("demo", """
            The quickstart: starts a throwaway PostgreSQL from the local server binaries, attaches
            an event trigger to a sample table, runs a local webhook receiver and the worker with
            its web console (the address is printed), makes a few writes and prints each delivery
            with its signature check.

            Examples:
              triggerevents demo
              triggerevents demo --no-wait
            """)
        {
            wait, noWait,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, () =>
        {
            var keepRunning = parse.GetValue(wait) || (!parse.GetValue(noWait) && !Console.IsInputRedirected && !Console.IsOutputRedirected);
            return RunAsync(keepRunning, parse.GetValue(CommandLine.Verbose), cancellationToken);
        }));
        return command;
    }

    private static async Task<int> RunAsync(bool keepRunning, bool verbose, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };

        // SIGTERM (`timeout`, a terminal closing, a test) stops and cleans up as Ctrl-C does.
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, signal =>
        {
            signal.Cancel = true;
            stop.Cancel();
        });

        Step("Starting a throwaway PostgreSQL");
        using var server = await ThrowawayServer.StartAsync();
        Console.WriteLine($"  {server.Description}");
        await using var dataSource = NpgsqlDataSource.Create(server.ConnectionString);

        Step("Installing the trigger_events schema (triggerevents migrate)");
        var migrated = await Migrator.MigrateAsync(dataSource, stop.Token);
        Console.WriteLine($"  schema version {migrated.ToVersion}");

        Step("Creating the sample table and attaching an event trigger (trigger_events.attach)");
        await using (var create = dataSource.CreateCommand(
            "CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, status text NOT NULL DEFAULT 'new', amount numeric(10,2))"))
        {
            await create.ExecuteNonQueryAsync(stop.Token);
        }

        var attached = await EventTriggerAdmin.AttachAsync(dataSource, "orders", "orders_changed", null, null, null, null, true, EventTriggerAdmin.DefaultLockTimeout, stop.Token);
        Console.WriteLine($"  SELECT trigger_events.attach('orders', 'orders_changed');  -- {attached}");

        var secret = "whsec_" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(24));
        await using var receiver = await DemoReceiver.StartAsync(secret);
        var yaml = $"""
            subscriptions:
              - name: demo-orders
                trigger: orders_changed
                webhook:
                  url: {receiver.Url}
                  signing_secret: {secret}
                  timeout: 5s
                retry:
                  max_attempts: 5
                  initial_interval: 1s
            worker:
              http_port: {Loopback.FreePort()}
              poll_interval: 500ms
              console_port: {ConsolePort()}
            """;
        Step("Starting a local webhook receiver and the worker with this configuration");
        Console.WriteLine(string.Join('\n', yaml.Split('\n').Select(l => "  " + l.Replace(secret, "whsec_…", StringComparison.Ordinal))));
        var config = ConfigLoader.Parse(yaml, "demo.yaml", _ => null);
        await using var logger = new LoggerConfiguration()
            .MinimumLevel.Is(verbose ? LogEventLevel.Information : LogEventLevel.Warning)
            .WriteTo.Console(outputTemplate: "  [worker] {Level:u3} {Message:lj}{NewLine}")
            .CreateLogger();
        using var workerStop = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
        var worker = RunCommand.RunAsync(config, dataSource, logger, workerStop.Token, "127.0.0.1");
        try
        {
            return await WriteAndPrintDeliveriesAsync(dataSource, server, receiver, config.Worker.HttpPort, config.Worker.ConsolePort, worker, keepRunning, stop);
        }
        finally
        {
            // Also on a failure: the worker must stop before its data source and server go away.
            Step("Cleaning up: stopping the worker, the receiver and PostgreSQL");
            await workerStop.CancelAsync();
            await worker;
        }
    }

    /// <summary>The scripted writes, each delivery as it arrives, the status table; then, if asked, more until Ctrl-C.</summary>
    private static async Task<int> WriteAndPrintDeliveriesAsync(
        NpgsqlDataSource dataSource, ThrowawayServer server, DemoReceiver receiver, int workerPort, int consolePort, Task<int> worker, bool keepRunning, CancellationTokenSource stop)
    {
        await WaitUntilReadyAsync(workerPort, worker, stop.Token);
        Step("The web console of this worker (worker.console_port): open it in a browser");
        Console.WriteLine($"  {ConsoleServer.BrowserUrl(new IPEndPoint(IPAddress.Loopback, consolePort))}");

        Step("Writing to the table; each change is an event, delivered and verified below");
        await ExecuteAsync(dataSource, "INSERT INTO orders (customer, amount) VALUES ('ada', 42.00), ('grace', 17.50)", stop.Token);
        await ExecuteAsync(dataSource, "UPDATE orders SET status = 'paid' WHERE customer = 'ada'", stop.Token);
        await ExecuteAsync(dataSource, "UPDATE orders SET amount = 18.00 WHERE customer = 'grace'", stop.Token);
        await ExecuteAsync(dataSource, "DELETE FROM orders WHERE customer = 'grace'", stop.Token);
        var manual = await EventTriggerAdmin.InvokeAsync(dataSource, "orders_changed", """{"note": "a MANUAL event from trigger_events.invoke"}""", stop.Token);
        Console.WriteLine($"  SELECT trigger_events.invoke('orders_changed', ...);  -- event {manual}");

        var printed = 0;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
        deadline.CancelAfter(TimeSpan.FromSeconds(60));
        try
        {
            while (printed < ScriptedEvents)
            {
                printed += await receiver.PrintNewAsync(deadline.Token);
            }
        }
        catch (OperationCanceledException) when (!stop.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync($"triggerevents: only {printed} of {ScriptedEvents} deliveries arrived within 60 s");
        }

        if (!stop.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(300), stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            Step("triggerevents status");
            var statuses = await StatusQueries.GetSubscriptionStatusAsync(dataSource, CancellationToken.None);
            TextTable.Write(
                ["SUBSCRIPTION", "TRIGGER", "PENDING", "RETRYING", "IN FLIGHT", "DEAD"],
                statuses.Select(s => new[] { s.Subscription, s.TriggerName, $"{s.Pending}", $"{s.Retrying}", $"{s.InFlight}", $"{s.Dead}" }));
        }

        if (keepRunning && !stop.IsCancellationRequested)
        {
            Step("Still running: write to the table yourself and watch the deliveries. Ctrl-C stops and cleans up.");
            Console.WriteLine($"  psql \"{server.PsqlTarget}\" -c \"INSERT INTO orders (customer, amount) VALUES ('you', 1)\"");
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    await receiver.PrintNewAsync(stop.Token);
                }
            }
            catch (OperationCanceledException)
            {
                // Ctrl-C.
            }
        }

        return printed >= ScriptedEvents && receiver.Verified == receiver.Received ? ExitCodes.Done : ExitCodes.Failed;
    }

    /// <summary>Waits for the worker's /readyz: its subscriptions are registered from then on.</summary>
    private static async Task WaitUntilReadyAsync(int port, Task<int> worker, CancellationToken cancellationToken)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(60));
        while (!worker.IsCompleted)
        {
            try
            {
                using var response = await client.GetAsync(new Uri($"http://127.0.0.1:{port}/readyz"), deadline.Token);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!deadline.IsCancellationRequested)
            {
                // One slow answer on a busy machine: the probe's own timeout, not the deadline.
            }

            await Task.Delay(100, deadline.Token);
        }

        throw new InvalidOperationException($"the worker stopped during start-up (exit {await worker})");
    }

    /// <summary>
    /// The console's usual port, 8081, when it is free, so the address is the one the README
    /// shows; another free one when something (a second demo) holds it.
    /// </summary>
    private static int ConsolePort()
    {
        try
        {
            using var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, ConsoleOptions.DefaultListen.Port);
            probe.Start();
            return ConsoleOptions.DefaultListen.Port;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return Loopback.FreePort();
        }
    }

    private static void Step(string text)
    {
        Console.WriteLine();
        Console.WriteLine($"==> {text}");
    }

    private static async Task ExecuteAsync(NpgsqlDataSource dataSource, string sql, CancellationToken cancellationToken)
    {
        Console.WriteLine($"  {sql};");
        await using var command = dataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>A throwaway cluster from the local server binaries, removed on exit.</summary>
    private sealed class ThrowawayServer : IDisposable
    {
        private readonly LocalCluster cluster;

        private ThrowawayServer(LocalCluster cluster) => this.cluster = cluster;

        public string ConnectionString => cluster.AdminConnectionString;

        public string Description => $"local server binaries, port {cluster.Port}, data in {cluster.DataDirectory}";

        public string PsqlTarget
        {
            get
            {
                var builder = new NpgsqlConnectionStringBuilder(ConnectionString);
                return $"postgresql://{builder.Username}@{builder.Host}:{builder.Port}/{builder.Database}";
            }
        }

        public static async Task<ThrowawayServer> StartAsync() =>
            new(await LocalCluster.StartAsync() ?? throw new InvalidOperationException(
                "the demo needs PostgreSQL's server binaries; on Debian or Ubuntu: sudo apt-get install -y postgresql (scripts/demo.sh does it for you)"));

        public void Dispose()
        {
            NpgsqlConnection.ClearAllPools();
            cluster.Dispose();
        }
    }

    /// <summary>The demo's webhook receiver: checks each signature and queues a line to print.</summary>
    private sealed class DemoReceiver : IAsyncDisposable
    {
        private readonly WebApplication app;
        private readonly ConcurrentQueue<string> lines = new();
        private readonly SemaphoreSlim arrived = new(0);
        private int received;
        private int verified;

        private DemoReceiver(WebApplication app) => this.app = app;

        public Uri Url { get; private set; } = null!;

        public int Received => received;

        public int Verified => verified;

        public static async Task<DemoReceiver> StartAsync(string secret)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            var receiver = new DemoReceiver(app);
            app.MapPost("/webhooks/orders", async (HttpRequest request) =>
            {
                using var buffer = new MemoryStream();
                await request.Body.CopyToAsync(buffer);
                var body = buffer.ToArray();
                var check = WebhookSigner.Verify(
                    request.Headers["webhook-id"], request.Headers["webhook-timestamp"], body, request.Headers["webhook-signature"],
                    [secret], DateTimeOffset.UtcNow);
                receiver.Record(request.Headers["webhook-id"].ToString(), body, check);
                return Results.NoContent();
            });
            await app.StartAsync();
            receiver.Url = new Uri(new Uri(app.Urls.First()), "/webhooks/orders");
            return receiver;
        }

        /// <summary>Prints what arrived since the last call (waiting for at least one); returns how many.</summary>
        public async Task<int> PrintNewAsync(CancellationToken cancellationToken)
        {
            await arrived.WaitAsync(cancellationToken);
            var count = 1;
            while (arrived.Wait(0))
            {
                count++;
            }

            for (var i = 0; i < count && lines.TryDequeue(out var line); i++)
            {
                Console.WriteLine(line);
            }

            return count;
        }

        public async ValueTask DisposeAsync()
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }

        private void Record(string webhookId, byte[] body, WebhookVerification check)
        {
            Interlocked.Increment(ref received);
            if (check == WebhookVerification.Valid)
            {
                Interlocked.Increment(ref verified);
            }

            using var json = JsonDocument.Parse(body);
            var root = json.RootElement;
            var data = root.GetProperty("event").GetProperty("data");
            lines.Enqueue(
                $"  <- {webhookId}  {root.GetProperty("event").GetProperty("op").GetString(),-6} {root.GetProperty("table").GetProperty("name").GetString()}  " +
                $"old={Compact(data.GetProperty("old"))} new={Compact(data.GetProperty("new"))}  " +
                $"signature {(check == WebhookVerification.Valid ? "valid" : "INVALID: " + check)}");
            arrived.Release();
        }

        private static string Compact(JsonElement element) => element.ValueKind == JsonValueKind.Null ? "null" : element.GetRawText();
    }
}
