using System.Globalization;
using System.Text.RegularExpressions;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary>Metrics that add up over replicas, and a log that shows a healthy worker at work.</summary>
public sealed partial class MetricsTests
{
    private TestDatabase database = null!;
    private string directory = null!;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        directory = Directory.CreateTempSubdirectory("te-metrics-").FullName;
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
    }

    [TearDown]
    public async Task DropDatabase()
    {
        await database.DisposeAsync();
        Directory.Delete(directory, recursive: true);
    }

    /// <summary>A worker for one subscription to <paramref name="url"/>; <paramref name="retryAfter"/> is its first retry's wait.</summary>
    private WorkerProcess Start(Uri url, string worker, string retryAfter = "200ms", string subscription = "hook")
    {
        var port = Loopback.FreePort();
        var path = Path.Combine(directory, $"{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, $"""
            subscriptions:
              - name: {subscription}
                trigger: orders_changed
                webhook:
                  url: {url}
                  timeout: 5s
                retry:
                  initial_interval: {retryAfter}
            worker:
              http_port: {port}
              poll_interval: 200ms
            {worker}
            """);
        return WorkerProcess.Start(database.WorkerConnectionString, path, port);
    }

    private static async Task<string> MetricsAsync(WorkerProcess worker) => (await worker.GetAsync("/metrics")).Body;

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, Func<string>? output = null)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!await condition())
        {
            try
            {
                await Task.Delay(100, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"Waited 60 s for {what}.\n{output?.Invoke()}");
            }
        }
    }

    [Test]
    public async Task The_database_wide_backlog_is_exported_by_one_replica_at_a_time_and_another_takes_over_when_it_stops()
    {
        // Nothing listens there: each delivery fails once and waits an hour for its retry.
        var nowhere = new Uri($"http://127.0.0.1:{Loopback.FreePort()}/hook");
        await using var first = Start(nowhere, "  metrics_interval: 200ms", retryAfter: "1h");
        await using var second = Start(nowhere, "  metrics_interval: 200ms", retryAfter: "1h");
        await Task.WhenAll(first.WaitUntilReadyAsync(), second.WaitUntilReadyAsync());
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");

        const string pending = "triggerevents_pending_deliveries{subscription=\"hook\"} 3";
        WorkerProcess? reporter = null, other = null;
        await WaitUntilAsync(
            async () =>
            {
                var (a, b) = (await MetricsAsync(first), await MetricsAsync(second));
                (reporter, other) = a.Contains(pending, StringComparison.Ordinal) ? (first, second)
                    : b.Contains(pending, StringComparison.Ordinal) ? (second, first)
                    : (null, null);
                return reporter is not null;
            },
            "one replica to export 3 pending deliveries");
        var reporting = await MetricsAsync(reporter!);
        var silent = await MetricsAsync(other!);

        Assert.That(reporting, Does.Contain("triggerevents_backlog_reporter 1"));
        Assert.That(reporting, Does.Contain("read from the database every 200ms (worker.metrics_interval)"), "the help says how fresh the gauge is");
        Assert.That(silent, Does.Contain("triggerevents_backlog_reporter 0"));
        Assert.That(silent, Does.Not.Contain("triggerevents_pending_deliveries{"), "the other replica exports no copy to double count");
        Assert.That(silent, Does.Not.Contain("triggerevents_dead_deliveries{"));

        Assert.That(await reporter!.TerminateAsync(), Is.Zero, reporter.Output);
        await WaitUntilAsync(async () => (await MetricsAsync(other!)).Contains(pending, StringComparison.Ordinal), "the other replica to take over");
        Assert.That(await MetricsAsync(other!), Does.Contain("triggerevents_backlog_reporter 1"));
    }

    [Test]
    public async Task Each_groups_workers_export_their_own_groups_backlog_whatever_the_other_groups_run()
    {
        var nowhere = new Uri($"http://127.0.0.1:{Loopback.FreePort()}/hook");
        await using var teamA = Start(nowhere, "  metrics_interval: 200ms\n  group: team-a", retryAfter: "1h", subscription: "a-hook");
        await using var teamB = Start(nowhere, "  metrics_interval: 200ms\n  group: team-b", retryAfter: "1h", subscription: "b-hook");
        await Task.WhenAll(teamA.WaitUntilReadyAsync(), teamB.WaitUntilReadyAsync());
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");

        await WaitUntilAsync(
            async () => (await MetricsAsync(teamA)).Contains("triggerevents_pending_deliveries{subscription=\"a-hook\"} 3", StringComparison.Ordinal)
                        && (await MetricsAsync(teamB)).Contains("triggerevents_pending_deliveries{subscription=\"b-hook\"} 3", StringComparison.Ordinal),
            "each team's worker to export its own subscription's 3 pending deliveries");
        var (a, b) = (await MetricsAsync(teamA), await MetricsAsync(teamB));

        Assert.That(a, Does.Contain("triggerevents_backlog_reporter 1").And.Not.Contain("b-hook"), "team A's scrape: its own subscription only");
        Assert.That(b, Does.Contain("triggerevents_backlog_reporter 1").And.Not.Contain("a-hook"), "team B's scrape: its own subscription only");
        Assert.That(a, Does.Contain("triggerevents_trigger_health{trigger=\"orders_changed\",state=\"ok\"} 1"), "the trigger team A listens to");
        Assert.That(b, Does.Contain("triggerevents_trigger_health{trigger=\"orders_changed\",state=\"ok\"} 1"), "the trigger team B listens to");
    }

    [Test]
    public async Task A_reporter_that_can_no_longer_read_the_backlog_exports_none_instead_of_stale_figures()
    {
        var nowhere = new Uri($"http://127.0.0.1:{Loopback.FreePort()}/hook");
        await using var worker = Start(nowhere, "  metrics_interval: 200ms", retryAfter: "1h");
        await worker.WaitUntilReadyAsync();
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");
        await WaitUntilAsync(
            async () => (await MetricsAsync(worker)).Contains("triggerevents_pending_deliveries{subscription=\"hook\"} 3", StringComparison.Ordinal),
            "3 pending deliveries exported");

        // The status query fails from now on (as a statement_timeout over a large backlog would),
        // while the backlog grows.
        await database.ExecuteAsync($"REVOKE EXECUTE ON FUNCTION trigger_events.subscription_status_rows(text) FROM {Migrator.WorkerRole}");
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(4, 5) g");
        await WaitUntilAsync(
            async () => (await MetricsAsync(worker)).Contains("triggerevents_backlog_reporter 0", StringComparison.Ordinal),
            "the reporter to step down", () => worker.Output);
        var unreadable = await MetricsAsync(worker);

        Assert.That(unreadable, Does.Not.Contain("triggerevents_pending_deliveries{"), "no stale 3 while the backlog was 5");
        Assert.That(worker.Output, Does.Contain("Maintenance duty"), "the failure is logged");
    }

    [Test]
    public async Task Trigger_health_is_exported_and_a_disabled_trigger_leaves_the_worker_ready()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var worker = Start(receiver.Url(), "  metrics_interval: 200ms");
        await worker.WaitUntilReadyAsync();
        await WaitUntilAsync(
            async () => (await MetricsAsync(worker)).Contains("triggerevents_trigger_health{trigger=\"orders_changed\",state=\"ok\"} 1", StringComparison.Ordinal),
            "the trigger's health", () => worker.Output);

        await database.ExecuteAsync("ALTER TABLE orders DISABLE TRIGGER te_orders_changed_insert");

        await WaitUntilAsync(
            async () => (await MetricsAsync(worker)).Contains("triggerevents_trigger_health{trigger=\"orders_changed\",state=\"disabled\"} 1", StringComparison.Ordinal),
            "the trigger to be reported disabled", () => worker.Output);
        Assert.That(await MetricsAsync(worker), Does.Contain("triggerevents_trigger_health{trigger=\"orders_changed\",state=\"ok\"} 0"));
        Assert.That((await worker.GetAsync("/readyz")).Status, Is.EqualTo(200), "readiness is about the worker, not the triggers");
    }

    [Test]
    public async Task A_healthy_worker_logs_a_summary_of_its_deliveries_every_summary_interval()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var worker = Start(receiver.Url(), "  summary_interval: 300ms");
        await worker.WaitUntilReadyAsync();

        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");

        await WaitUntilAsync(
            () => Task.FromResult(Summaries(worker.Output).Sum() == 3 && Summaries(worker.Output).Contains(0)),
            "summaries adding up to 3 deliveries, and one of an idle interval",
            () => worker.Output);
        Assert.That(worker.Output, Does.Match(@"INF In the last 300ms: [1-3] delivered, \d+ failed attempts to retry, 0 dead \(hook: [1-3] delivered[^)]*\)"));
        Assert.That(worker.Output, Does.Contain("INF In the last 300ms: 0 delivered, 0 failed attempts to retry, 0 dead"), "an idle interval is said too");
    }

    private static IEnumerable<int> Summaries(string output) =>
        SummaryLine().Matches(output).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));

    [GeneratedRegex(@"In the last \S+: (\d+) delivered")]
    private static partial Regex SummaryLine();
}
