using System.Text.Json;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary>The worker process's HTTP endpoints and logs.</summary>
public sealed class WorkerEndpointTests
{
    private static string Config(WebhookReceiver receiver, int port, string directory)
    {
        var path = Path.Combine(directory, $"{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, $"""
            subscriptions:
              - name: hook
                trigger: orders_changed
                webhook:
                  url: {receiver.Url()}
                  headers:
                    X-Api-Key: never-log-this-value
            worker:
              http_port: {port}
              poll_interval: 200ms
            """);
        return path;
    }

    [Test]
    public async Task Healthz_readyz_and_metrics_answer_and_json_logs_carry_no_secret()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await using var receiver = await WebhookReceiver.StartAsync();
        var port = Loopback.FreePort();
        var path = Config(receiver, port, Path.GetTempPath());
        await using var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port, new Dictionary<string, string?> { ["TRIGGER_EVENTS_LOG_FORMAT"] = "json" });
        await worker.WaitUntilReadyAsync();

        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");
        await receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 3, TimeSpan.FromSeconds(30), "3 deliveries");
        var health = await worker.GetAsync("/healthz");
        var ready = await worker.GetAsync("/readyz");
        // The receiver counts a request when it answers; the worker, once the answer has reached
        // it: the last may still be on its way.
        const string delivered = "triggerevents_deliveries_total{subscription=\"hook\",outcome=\"delivered\"} 3";
        var metrics = await worker.GetAsync("/metrics");
        for (var tries = 0; tries < 100 && !metrics.Body.Contains(delivered, StringComparison.Ordinal); tries++)
        {
            await Task.Delay(100);
            metrics = await worker.GetAsync("/metrics");
        }

        var exit = await worker.TerminateAsync();
        File.Delete(path);

        Assert.That(health, Is.EqualTo((200, "ok\n")));
        Assert.That(ready, Is.EqualTo((200, "ready\n")));
        Assert.That(metrics.Status, Is.EqualTo(200));
        Assert.That(metrics.Body, Does.Contain(delivered));
        foreach (var name in new[]
        {
            "triggerevents_delivery_duration_seconds", "triggerevents_end_to_end_latency_seconds", "triggerevents_pending_deliveries",
            "triggerevents_oldest_pending_age_seconds", "triggerevents_dead_deliveries", "triggerevents_leases_expired_total", "triggerevents_build_info",
        })
        {
            Assert.That(metrics.Body, Does.Contain(name), name);
        }

        Assert.That(exit, Is.Zero, worker.Output);
        var lines = worker.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Is.Not.Empty);
        foreach (var line in lines)
        {
            using var json = JsonDocument.Parse(line);
            Assert.That(json.RootElement.TryGetProperty("@t", out _), Is.True, line);
        }

        Assert.That(worker.Output, Does.Not.Contain("never-log-this-value"));
    }

    [Test]
    public async Task A_running_worker_stays_ready_and_delivers_when_migrate_of_a_newer_release_runs_beside_it()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await using var receiver = await WebhookReceiver.StartAsync();
        var port = Loopback.FreePort();
        var path = Config(receiver, port, Path.GetTempPath());
        await using var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port);
        await worker.WaitUntilReadyAsync();

        // As the next release's migrate Job leaves the database during a rollout.
        await database.ExecuteAsync($"INSERT INTO trigger_events.migrations (version, name) VALUES ({TriggerEvents.Postgres.Migrations.MigrationSource.LatestVersion + 1}, 'next_release')");
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 1, TimeSpan.FromSeconds(30), "the delivery");
        var ready = await worker.GetAsync("/readyz");
        File.Delete(path);

        Assert.That(ready.Status, Is.EqualTo(200), ready.Body);
        Assert.That(ready.Body, Does.StartWith("ready").And.Contain("newer"));
    }

    [Test]
    public async Task A_worker_of_an_earlier_release_starts_on_a_newer_schema_that_keeps_its_workers_and_delivers()
    {
        // A worker restarted after the next release's migrate Job, or rolled back to.
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        var ours = TriggerEvents.Postgres.Migrations.MigrationSource.LatestVersion;
        await database.ExecuteAsync($"INSERT INTO trigger_events.migrations (version, name, workers_from) VALUES ({ours + 1}, 'next_release', {ours})");
        await using var receiver = await WebhookReceiver.StartAsync();
        var port = Loopback.FreePort();
        var path = Config(receiver, port, Path.GetTempPath());
        await using var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port);

        await worker.WaitUntilReadyAsync();
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 1, TimeSpan.FromSeconds(30), "the delivery");
        var ready = await worker.GetAsync("/readyz");
        File.Delete(path);

        Assert.That(ready.Body, Does.StartWith("ready").And.Contain($"schema version {ours + 1} is newer than this worker's {ours}"));
        Assert.That(worker.Output, Does.Contain($"The schema is at version {ours + 1}, newer than this worker's {ours}; its migrations keep workers of version {ours} and later working"));
    }

    [Test]
    public async Task A_worker_of_an_earlier_release_refuses_to_start_on_a_newer_schema_that_needs_newer_workers()
    {
        await using var database = await TestDatabase.CreateAsync();
        var ours = TriggerEvents.Postgres.Migrations.MigrationSource.LatestVersion;
        await database.ExecuteAsync(
            $"INSERT INTO trigger_events.migrations (version, name, workers_from) VALUES ({ours + 1}, 'next_release', {ours}), ({ours + 2}, 'breaking', {ours + 1})");
        await using var receiver = await WebhookReceiver.StartAsync();
        var port = Loopback.FreePort();
        var path = Config(receiver, port, Path.GetTempPath());
        await using var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port);

        var exit = await worker.WaitForExitAsync(TimeSpan.FromSeconds(60));
        File.Delete(path);

        Assert.That(exit, Is.EqualTo(1), worker.Output);
        Assert.That(worker.Output, Does.Contain($"The database schema is at version {ours + 2}, newer than this binary knows ({ours}), and needs workers of schema version {ours + 1} or later"));
    }

    [Test]
    public async Task A_worker_refuses_a_database_moved_here_until_migrate_repairs_it_then_delivers()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        // As a logical restore leaves it: the schema's tables have other OIDs than it recorded.
        await database.ExecuteAsync("UPDATE trigger_events.installation SET event_log_oid = 1");
        await using var receiver = await WebhookReceiver.StartAsync();
        var port = Loopback.FreePort();
        var path = Config(receiver, port, Path.GetTempPath());

        int refused;
        string refusal;
        await using (var moved = WorkerProcess.Start(database.WorkerConnectionString, path, port))
        {
            refused = await moved.WaitForExitAsync(TimeSpan.FromSeconds(60));
            refusal = moved.Output;
        }

        var migrate = await new Cli(database.ConnectionString).RunAsync("migrate");
        await using var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port);
        await worker.WaitUntilReadyAsync();
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 1, TimeSpan.FromSeconds(30), "the delivery");
        File.Delete(path);

        Assert.That(refused, Is.EqualTo(1), refusal);
        Assert.That(refusal, Does.Contain("This database's trigger_events state was made elsewhere: its tables have other OIDs")
            .And.Contain("Run 'triggerevents migrate', which repairs it"));
        Assert.That(migrate.ExitCode, Is.Zero, migrate.ToString());
        Assert.That(migrate.Out, Does.Contain("Repaired a database moved here: its tables have other OIDs").And.Contain("1 event triggers regenerated"));
    }

    [Test]
    public async Task A_worker_on_a_database_without_the_schema_waits_alive_and_not_ready_saying_so_once_then_delivers_after_migrate()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await using var receiver = await WebhookReceiver.StartAsync();
        var port = Loopback.FreePort();
        var path = Config(receiver, port, Path.GetTempPath());
        await using var worker = WorkerProcess.Start(database.ConnectionString, path, port);

        // Waiting is visible: alive for the liveness probe, not ready, one line in the log.
        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            while (!worker.Output.Contains("Waiting for the schema", StringComparison.Ordinal))
            {
                Assert.That(worker.HasExited, Is.False, worker.Output);
                await Task.Delay(50, deadline.Token);
            }
        }

        // The line may come before the HTTP server listens: the worker's start runs beside it.
        (int Status, string Body) health;
        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            while (true)
            {
                try
                {
                    health = await worker.GetAsync("/healthz");
                    break;
                }
                catch (HttpRequestException)
                {
                    await Task.Delay(50, deadline.Token);
                }
            }
        }

        var ready = await worker.GetAsync("/readyz");
        var healthcheck = await new Cli(null).RunAsync("healthcheck", "--config", path);
        var migrate = await new Cli(database.ConnectionString).RunAsync("migrate");
        await worker.WaitUntilReadyAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 1, TimeSpan.FromSeconds(30), "the delivery after migrate");
        File.Delete(path);

        Assert.That(health.Status, Is.EqualTo(200), worker.Output);
        Assert.That(ready.Status, Is.EqualTo(503));
        Assert.That(ready.Body, Does.Contain("schema version 0"));
        Assert.That(healthcheck.ExitCode, Is.Zero, healthcheck.ToString());
        Assert.That(migrate.ExitCode, Is.Zero, migrate.ToString());
        var waiting = worker.Output.Split('\n').Where(l => l.Contains("Waiting for the schema", StringComparison.Ordinal)).ToList();
        Assert.That(waiting, Has.Count.EqualTo(1), worker.Output);
        Assert.That(waiting[0], Does.Contain("not installed in this database, run 'triggerevents migrate' first"));
        Assert.That(worker.Output, Does.Not.Contain("   at "));
    }

    [Test]
    public async Task Healthcheck_asks_the_port_of_the_configuration_and_fails_in_one_line_when_no_worker_answers()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var receiver = await WebhookReceiver.StartAsync();
        var port = Loopback.FreePort();
        var path = Config(receiver, port, Path.GetTempPath());
        await using var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port);
        await worker.WaitUntilReadyAsync();

        var alive = await new Cli(null).RunWithAsync(new() { ["TRIGGER_EVENTS_CONFIG"] = path }, "healthcheck");
        Assert.That(await worker.TerminateAsync(), Is.Zero);
        var gone = await new Cli(null).RunWithAsync(new() { ["TRIGGER_EVENTS_CONFIG"] = path }, "healthcheck");
        File.Delete(path);

        Assert.That(alive.ExitCode, Is.Zero, alive.ToString());
        Assert.That(alive.Out.Trim(), Is.EqualTo($"http://127.0.0.1:{port}/healthz: ok"));
        Assert.That(gone.ExitCode, Is.EqualTo(1), gone.ToString());
        Assert.That(gone.Error.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(gone.Error, Does.StartWith($"triggerevents: no worker answers at http://127.0.0.1:{port}/healthz"));
    }

    [Test]
    public async Task Replayed_and_dead_retried_deliveries_are_counted_but_kept_out_of_the_capture_to_delivery_latency()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await using var receiver = await WebhookReceiver.StartAsync();
        var port = Loopback.FreePort();
        var path = Config(receiver, port, Path.GetTempPath());
        await using var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port);
        await worker.WaitUntilReadyAsync();
        var cli = new Cli(database.ConnectionString);

        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");
        await receiver.WaitUntilAsync(r => r.Requests.Count(q => q.Succeeded) == 3, TimeSpan.FromSeconds(30), "3 first deliveries");
        var replay = await cli.RunAsync("replay", "--subscription", "hook", "--since", "1h");
        await receiver.WaitUntilAsync(r => r.Requests.Count(q => q.Succeeded) == 6, TimeSpan.FromSeconds(30), "3 replayed deliveries");
        // Recorded first: a result written after the UPDATE below would make the row delivered again.
        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            while (await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered'") < 3)
            {
                await Task.Delay(50, deadline.Token);
            }
        }

        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'dead' WHERE event_id = 1");
        var retry = await cli.RunAsync("dead", "retry", "--subscription", "hook");
        await receiver.WaitUntilAsync(r => r.Requests.Count(q => q.Succeeded) == 7, TimeSpan.FromSeconds(30), "the dead-retried delivery");
        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            while (!(await worker.GetAsync("/metrics")).Body.Contains("triggerevents_deliveries_total{subscription=\"hook\",outcome=\"delivered\"} 7", StringComparison.Ordinal))
            {
                await Task.Delay(50, deadline.Token);
            }
        }

        var metrics = (await worker.GetAsync("/metrics")).Body;
        File.Delete(path);

        Assert.That(replay.ExitCode, Is.Zero, replay.ToString());
        Assert.That(retry.ExitCode, Is.Zero, retry.ToString());
        Assert.That(metrics, Does.Contain("triggerevents_end_to_end_latency_seconds_count{subscription=\"hook\"} 3"), metrics);
    }
}
