using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Npgsql;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>One subscription of a delivery-semantics test: where it posts, how long it waits, how it retries.</summary>
internal sealed record Hook(string Name, Uri Url)
{
    /// <summary>Generous unless a test is about timeouts: a loaded machine must not turn an answer into a timeout.</summary>
    public string Timeout { get; init; } = "5s";

    public int MaxAttempts { get; init; } = 3;

    public string InitialInterval { get; init; } = "100ms";

    public string MaxInterval { get; init; } = "500ms";

    /// <summary>The <c>signing_secret</c> value: one secret, or several separated by spaces.</summary>
    public string? SigningSecret { get; init; }

    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>();

    /// <summary>The <c>webhook-id</c> the worker sends for <paramref name="eventId"/>.</summary>
    public string IdOf(long eventId) => Core.Delivery.WebhookId.For(eventId, Name);

    public string ToYaml()
    {
        var yaml = new StringBuilder();
        yaml.Append(CultureInfo.InvariantCulture, $"""
              - name: {Name}
                trigger: orders_changed
                webhook:
                  url: "{Url}"
                  timeout: {Timeout}

            """);
        if (SigningSecret is not null)
        {
            yaml.Append(CultureInfo.InvariantCulture, $"      signing_secret: \"{SigningSecret}\"\n");
        }

        if (Headers.Count > 0)
        {
            yaml.Append("      headers:\n");
            foreach (var (name, value) in Headers)
            {
                yaml.Append(CultureInfo.InvariantCulture, $"        {name}: \"{value}\"\n");
            }
        }

        yaml.Append(CultureInfo.InvariantCulture, $"""
                retry:
                  max_attempts: {MaxAttempts}
                  initial_interval: {InitialInterval}
                  max_interval: {MaxInterval}

            """);
        return yaml.ToString();
    }
}

/// <summary>
/// A port on 127.0.0.1 that is bound but not listening: a connection to it is refused, and no
/// other process can take the port while this lives (a port merely found free could be).
/// </summary>
internal sealed class ClosedPort : IDisposable
{
    private readonly Socket socket = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

    public ClosedPort() => socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));

    public Uri Url(string path = "/hook") => new($"http://127.0.0.1:{((IPEndPoint)socket.LocalEndPoint!).Port}{path}");

    public void Dispose() => socket.Dispose();
}

/// <summary>A row of <c>trigger_events.deliveries</c>, with its subscription's name.</summary>
internal sealed record DeliveryRow(string Subscription, long EventId, string Status, int Attempts, int? LastStatus, string? LastError);

/// <summary>A recorded attempt (<c>trigger_events.attempt_history</c>), with its subscription's name.</summary>
internal sealed record AttemptRow(string Subscription, long EventId, int Attempt, int? HttpStatus, string? Error, string? ResponseExcerpt);

/// <summary>
/// One state a delivery row went through, as a test trigger on <c>trigger_events.deliveries</c>
/// saw it. Both times come from the one <c>now()</c> of the statement that wrote the row, so for
/// a retry <see cref="Delay"/> is exactly the wait the worker chose.
/// </summary>
internal sealed record Transition(
    long Seq, string Subscription, long EventId, string Status, int Attempts, DateTimeOffset NextAttemptAt, DateTimeOffset UpdatedAt, int? LastStatus)
{
    public TimeSpan Delay => NextAttemptAt - UpdatedAt;
}

/// <summary>A failed attempt's scheduled retry, and when the retry was actually claimed.</summary>
/// <param name="AfterAttempt">The attempt that failed (1 for the first).</param>
/// <param name="Delay">The wait the worker chose.</param>
/// <param name="DueAt">When the retry became due (database clock).</param>
/// <param name="ClaimedAt">When the next attempt was claimed (database clock), or null if it never was.</param>
internal sealed record ScheduledRetry(int AfterAttempt, TimeSpan Delay, DateTimeOffset DueAt, DateTimeOffset? ClaimedAt);

/// <summary>
/// A worker scenario for the delivery-semantics tests: a database with the <c>orders</c> table,
/// a receiver, and the real executable running a configuration of <see cref="Hook"/>s. It also
/// records every state a delivery row goes through, and counts lost and duplicated events.
/// </summary>
internal sealed class DeliveryHarness : IAsyncDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    // A test instrument, not part of the product: an AFTER trigger that copies each new version
    // of a delivery row aside, so a test can read the exact retry schedule afterwards instead of
    // racing the worker to see a row between two of its updates.
    private const string TransitionLogSql = """
        CREATE TABLE public.delivery_transitions (
            seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subscription_id int         NOT NULL,
            event_id        bigint      NOT NULL,
            status          text        NOT NULL,
            attempts        int         NOT NULL,
            next_attempt_at timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL,
            last_status     int
        );
        -- SECURITY DEFINER: the trigger fires in the worker's statements, and the worker's role
        -- has no right on the test's own table.
        CREATE FUNCTION public.record_delivery_transition() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN
            INSERT INTO public.delivery_transitions (subscription_id, event_id, status, attempts, next_attempt_at, updated_at, last_status)
            VALUES (NEW.subscription_id, NEW.event_id, NEW.status::text, NEW.attempts, NEW.next_attempt_at, NEW.updated_at, NEW.last_status);
            RETURN NULL;
        END $$;
        CREATE TRIGGER record_delivery_transition AFTER INSERT OR UPDATE ON trigger_events.deliveries
            FOR EACH ROW EXECUTE FUNCTION public.record_delivery_transition();
        """;

    private readonly List<Hook> hooks = [];

    private DeliveryHarness(WorkerScenario scenario) => Scenario = scenario;

    public WorkerScenario Scenario { get; }

    public WebhookReceiver Receiver => Scenario.Receiver;

    public TestDatabase Database => Scenario.Database;

    public WorkerProcess Worker { get; private set; } = null!;

    public IReadOnlyList<Hook> Hooks => hooks;

    /// <summary>More keys for the <c>worker:</c> section of the next <see cref="StartWorkerAsync"/>, indented by two spaces.</summary>
    public string WorkerYaml { get; set; } = "";

    public static async Task<DeliveryHarness> CreateAsync()
    {
        var scenario = await WorkerScenario.CreateAsync();
        await scenario.Database.ExecuteAsync(TransitionLogSql);
        return new DeliveryHarness(scenario);
    }

    /// <summary>A hook posting to <paramref name="path"/> on the receiver.</summary>
    public Hook Hook(string name, string path = "/hook") => new(name, Receiver.Url(path));

    /// <summary>Writes a configuration with <paramref name="subscriptions"/>, starts the worker and waits until it is ready.</summary>
    public async Task<WorkerProcess> StartWorkerAsync(params Hook[] subscriptions)
    {
        hooks.AddRange(subscriptions);
        var port = Loopback.FreePort();
        var file = Path.Combine(Scenario.Directory, $"{Guid.NewGuid():N}.yaml");
        var yaml = new StringBuilder("subscriptions:\n");
        foreach (var hook in subscriptions)
        {
            yaml.Append(hook.ToYaml());
        }

        // The lease and the shutdown timeout are longer than every webhook timeout here, as the
        // configuration requires.
        yaml.Append(CultureInfo.InvariantCulture, $"""
            worker:
              http_port: {port}
              poll_interval: 200ms
              lease: 10s
              shutdown_timeout: 8s

            """);
        yaml.Append(WorkerYaml);
        await File.WriteAllTextAsync(file, yaml.ToString());
        Worker = await Scenario.StartWorkerAsync((file, port));
        return Worker;
    }

    /// <summary>Inserts rows id = from..to in one statement; one event each.</summary>
    public Task<int> InsertOrdersAsync(int from, int to) => Scenario.InsertOrdersAsync(from, to);

    /// <summary>
    /// Waits until <paramref name="expected"/> delivery rows exist and every one is delivered or
    /// dead (nothing more will be sent for them), then returns them.
    /// </summary>
    public async Task<IReadOnlyList<DeliveryRow>> WaitUntilSettledAsync(int expected, TimeSpan? timeout = null)
    {
        IReadOnlyList<DeliveryRow> rows = [];
        await WaitForAsync(
            async () =>
            {
                rows = await DeliveriesAsync();
                return rows.Count == expected && rows.All(r => r.Status is "delivered" or "dead");
            },
            timeout ?? Deadline,
            () => $"{expected} deliveries delivered or dead; now: {string.Join(", ", rows.Select(r => $"{r.Subscription}/{r.EventId} {r.Status} after {r.Attempts}"))}");
        return rows;
    }

    /// <summary>Polls <paramref name="condition"/> every 50 ms until it holds; fails at the deadline or when the worker exits.</summary>
    public async Task WaitForAsync(Func<Task<bool>> condition, TimeSpan timeout, Func<string> what)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (!await condition())
        {
            if (Worker is { HasExited: true })
            {
                Assert.Fail($"The worker exited ({Worker.ExitCode}) while waiting for {what()}:\n{Worker.Output}");
            }

            try
            {
                await Task.Delay(50, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"Waited {timeout} for {what()}.\nWorker output:\n{Worker?.Output}");
            }
        }
    }

    public Task<IReadOnlyList<DeliveryRow>> DeliveriesAsync() => DeliveryLedger.DeliveriesAsync(Database.DataSource);

    public Task<IReadOnlyList<AttemptRow>> AttemptsAsync() => DeliveryLedger.AttemptsAsync(Database.DataSource);

    public async Task<IReadOnlyList<Transition>> TransitionsAsync()
    {
        await using var command = Database.DataSource.CreateCommand("""
            SELECT t.seq, s.name, t.event_id, t.status, t.attempts, t.next_attempt_at, t.updated_at, t.last_status
            FROM public.delivery_transitions t JOIN trigger_events.subscriptions s ON s.id = t.subscription_id
            ORDER BY t.seq
            """);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<Transition>();
        while (await reader.ReadAsync())
        {
            rows.Add(new Transition(
                reader.GetInt64(0), reader.GetString(1), reader.GetInt64(2), reader.GetString(3), reader.GetInt32(4),
                reader.GetFieldValue<DateTimeOffset>(5), reader.GetFieldValue<DateTimeOffset>(6), reader.IsDBNull(7) ? null : reader.GetInt32(7)));
        }

        return rows;
    }

    /// <summary>
    /// The retries scheduled for one delivery, in order: each failed attempt's recorded wait
    /// (a transition back to <c>pending</c>) and the claim of the attempt after it (the first
    /// <c>in_flight</c> version with the next attempt number).
    /// </summary>
    public async Task<IReadOnlyList<ScheduledRetry>> RetriesAsync(Hook hook, long eventId)
    {
        var transitions = (await TransitionsAsync()).Where(t => t.Subscription == hook.Name && t.EventId == eventId).ToList();
        return
        [
            .. transitions
                .Where(t => t.Status == "pending" && t.Attempts > 0)
                .Select(t => new ScheduledRetry(
                    t.Attempts,
                    t.Delay,
                    t.NextAttemptAt,
                    transitions.FirstOrDefault(c => c.Seq > t.Seq && c.Status == "in_flight" && c.Attempts == t.Attempts + 1)?.UpdatedAt)),
        ];
    }

    /// <summary>The requests the receiver got for one delivery, in arrival order.</summary>
    public IReadOnlyList<ReceivedRequest> RequestsFor(Hook hook, long eventId) =>
        [.. Receiver.Requests.Where(r => r.WebhookId == hook.IdOf(eventId)).OrderBy(r => r.ReceivedAt)];

    /// <summary>
    /// Checks every captured event against every hook, once the deliveries have settled, and
    /// asserts the totals:
    /// <list type="bullet">
    /// <item>lost: neither answered 2xx by the receiver and recorded delivered, nor dead-lettered with a reason (must be 0);</item>
    /// <item>duplicates: 2xx answers beyond the first for one webhook-id (must be 0: nothing crashed);</item>
    /// <item>the attempts counter of each delivery equals its rows in the attempt log;</item>
    /// <item>for hooks that post to the receiver, it got every attempt that was answered, and no more requests than attempts.</item>
    /// </list>
    /// </summary>
    public async Task AssertLedgerAsync(int delivered, int dead)
    {
        var captured = await Scenario.CapturedEventIdsAsync();
        var rows = (await DeliveriesAsync()).ToDictionary(r => (r.Subscription, r.EventId));
        var attempts = await AttemptsAsync();
        var toReceiver = hooks.Where(h => h.Url.Port == Receiver.BaseUrl.Port).ToList();

        // Every attempt that got an answer reached the receiver's handler. One the worker gave up
        // on (a timeout) may not have, or may be seen only once the receiver notices the abort.
        var answered = attempts.Count(a => a.HttpStatus is not null && toReceiver.Any(h => h.Name == a.Subscription));
        await Receiver.WaitUntilAsync(r => r.Requests.Count >= answered, Deadline, $"{answered} answered requests");

        var problems = new List<string>();
        int deliveredCount = 0, deadCount = 0, lost = 0, duplicates = 0;
        foreach (var hook in hooks)
        {
            foreach (var eventId in captured)
            {
                var requests = RequestsFor(hook, eventId);
                var successes = requests.Count(r => r.Succeeded);
                duplicates += Math.Max(0, successes - 1);
                if (successes > 1)
                {
                    problems.Add($"{hook.Name}/{eventId}: {successes} 2xx answers");
                }

                if (!rows.TryGetValue((hook.Name, eventId), out var row))
                {
                    lost++;
                    problems.Add($"{hook.Name}/{eventId}: no delivery row");
                    continue;
                }

                switch (row.Status)
                {
                    case "delivered" when successes > 0 || !toReceiver.Contains(hook):
                        deliveredCount++;
                        break;
                    case "dead" when row.LastError is not null && successes == 0:
                        deadCount++;
                        break;
                    default:
                        lost++;
                        problems.Add($"{hook.Name}/{eventId}: {row.Status} after {row.Attempts} attempts with {successes} 2xx answers, last error '{row.LastError}'");
                        break;
                }

                var log = attempts.Where(a => a.Subscription == hook.Name && a.EventId == eventId).ToList();
                if (log.Count != row.Attempts)
                {
                    problems.Add($"{hook.Name}/{eventId}: the counter says {row.Attempts} attempts, the attempt log has {log.Count}");
                }

                var answeredHere = log.Count(a => a.HttpStatus is not null);
                if (toReceiver.Contains(hook) && (requests.Count < answeredHere || requests.Count > log.Count))
                {
                    problems.Add($"{hook.Name}/{eventId}: the receiver got {requests.Count} requests, the attempt log has {log.Count}, {answeredHere} of them answered");
                }
            }
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(lost, Is.Zero, "lost events: " + string.Join("; ", problems));
            Assert.That(duplicates, Is.Zero, "duplicate deliveries: " + string.Join("; ", problems));
            Assert.That(problems, Is.Empty);
            Assert.That(deliveredCount, Is.EqualTo(delivered), "delivered");
            Assert.That(deadCount, Is.EqualTo(dead), "dead");
        }
    }

    public ValueTask DisposeAsync() => Scenario.DisposeAsync();
}
