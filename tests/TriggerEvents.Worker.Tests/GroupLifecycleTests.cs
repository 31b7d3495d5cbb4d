using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// Groups and the lifecycle (SPEC "Configuration": groups, lifecycle), with real worker
/// processes, a real receiver and writes flowing: two teams on one trigger, a rolling deploy,
/// pause and resume under load, and a file that names another group's subscription. Every test
/// counts lost events (0) per subscription.
/// </summary>
public sealed class GroupLifecycleTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);

    /// <summary>A file of <paramref name="group"/> with one subscription per name, each to the receiver's /name.</summary>
    private static (string Path, int HttpPort) WriteConfig(WorkerScenario scenario, string? group, params string[] subscriptions)
    {
        var port = Loopback.FreePort();
        var file = Path.Combine(scenario.Directory, $"{Guid.NewGuid():N}.yaml");
        var entries = string.Concat(subscriptions.Select(name => $"""
              - name: {name}
                trigger: {scenario.Trigger}
                start_from: earliest
                webhook:
                  url: {scenario.Receiver.Url("/" + name)}
                  timeout: 5s

            """));
        File.WriteAllText(file, $"""
            subscriptions:
            {entries}
            worker:
            {(group is null ? "" : $"  group: {group}")}
              http_port: {port}
              poll_interval: 200ms
              lease: 10s
              shutdown_timeout: 10s
            """);
        return (file, port);
    }

    /// <summary>Inserts a row every few milliseconds until stopped; returns how many.</summary>
    private static async Task<int> WriteUntilAsync(WorkerScenario scenario, int firstId, CancellationToken stop)
    {
        var id = firstId;
        while (!stop.IsCancellationRequested)
        {
            await scenario.Database.ExecuteAsync($"INSERT INTO orders (id, amount) VALUES ({id}, {id})");
            id++;
            try
            {
                await Task.Delay(5, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        return id - firstId;
    }

    private static async Task AssertEverythingDeliveredAsync(WorkerScenario scenario, params string[] subscriptions)
    {
        var captured = await scenario.CapturedEventIdsAsync();
        foreach (var subscription in subscriptions)
        {
            await scenario.Receiver.WaitUntilAsync(
                r => r.DeliveredEventIds("/" + subscription).Count >= captured.Count, Patience, $"every event delivered to {subscription}");
            Assert.That(captured.Except(scenario.Receiver.DeliveredEventIds("/" + subscription)), Is.Empty, $"events lost for {subscription}");
        }

        Assert.That(scenario.Receiver.DuplicateDeliveries, Is.Zero, "duplicates");
    }

    [Test]
    public async Task Two_groups_on_one_trigger_each_deliver_everything_and_restarts_never_pause_the_other()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        // Each team logs in as a role of its own: A as trigger_events_worker, B as one given the
        // same rights by grant_worker_role (README, "Groups").
        await using var teamBRole = await LoginRole.CreateAsync(scenario.Database);
        await scenario.Database.ExecuteAsync($"SELECT trigger_events.grant_worker_role('{teamBRole.Name}')");
        var configA = WriteConfig(scenario, "team-a", "a-hook");
        await using var teamA = WorkerProcess.Start(scenario.DatabaseUrl, configA.Path, configA.HttpPort);
        var configB = WriteConfig(scenario, "team-b", "b-hook");
        var teamB = WorkerProcess.Start(teamBRole.ConnectionString, configB.Path, configB.HttpPort);
        await Task.WhenAll(teamA.WaitUntilReadyAsync(), teamB.WaitUntilReadyAsync());
        await scenario.InsertOrdersAsync(1, 200);

        // Team B restarts with its own file: under the old rule it switched a-hook off. A migrate
        // in between grants both roles again.
        Assert.That(await teamB.TerminateAsync(), Is.Zero, teamB.Output);
        await Migrator.MigrateAsync(scenario.Database.DataSource, CancellationToken.None);
        await using var teamBAgain = WorkerProcess.Start(teamBRole.ConnectionString, configB.Path, configB.HttpPort);
        await teamBAgain.WaitUntilReadyAsync();
        await scenario.InsertOrdersAsync(201, 300);

        Assert.That(await scenario.Database.ScalarAsync<string>("SELECT string_agg(name || ':' || group_name || ':' || enabled, ',' ORDER BY name) FROM trigger_events.subscriptions"),
            Is.EqualTo("a-hook:team-a:true,b-hook:team-b:true"));
        await AssertEverythingDeliveredAsync(scenario, "a-hook", "b-hook");
    }

    [Test]
    public async Task A_rolling_deploy_with_writes_flowing_loses_no_event_for_any_subscription()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        var oldConfig = WriteConfig(scenario, null, "kept", "dropped");
        var newConfig = WriteConfig(scenario, null, "kept", "added");
        using var stopWrites = new CancellationTokenSource();
        var oldWorker = WorkerProcess.Start(scenario.DatabaseUrl, oldConfig.Path, oldConfig.HttpPort);
        await oldWorker.WaitUntilReadyAsync();
        var writes = WriteUntilAsync(scenario, 1, stopWrites.Token);

        // The new release starts beside the old one, then the old one stops.
        await Task.Delay(500);
        var newWorker = WorkerProcess.Start(scenario.DatabaseUrl, newConfig.Path, newConfig.HttpPort);
        await newWorker.WaitUntilReadyAsync();
        await Task.Delay(1000);
        Assert.That(await oldWorker.TerminateAsync(), Is.Zero, oldWorker.Output);
        await Task.Delay(500);
        await stopWrites.CancelAsync();
        var written = await writes;

        Assert.That(await scenario.Database.ScalarAsync<string>("SELECT paused_by FROM trigger_events.subscriptions WHERE name = 'dropped'"), Is.EqualTo("file"));
        await AssertEverythingDeliveredAsync(scenario, "kept", "added");

        // "dropped" kept its place while paused: a file that names it again gets it everything.
        Assert.That(await newWorker.TerminateAsync(), Is.Zero, newWorker.Output);
        var allConfig = WriteConfig(scenario, null, "kept", "added", "dropped");
        await using var all = WorkerProcess.Start(scenario.DatabaseUrl, allConfig.Path, allConfig.HttpPort);
        await all.WaitUntilReadyAsync();
        await AssertEverythingDeliveredAsync(scenario, "kept", "added", "dropped");
        TestContext.Out.WriteLine($"{written} rows written during the deploy");
    }

    [Test]
    public async Task Pause_and_resume_under_load_send_nothing_while_paused_and_lose_nothing()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        var config = WriteConfig(scenario, null, "hook");
        await using var worker = WorkerProcess.Start(scenario.DatabaseUrl, config.Path, config.HttpPort);
        await worker.WaitUntilReadyAsync();
        var cli = new Dictionary<string, string?> { ["TRIGGER_EVENTS_DATABASE_URL"] = scenario.DatabaseUrl };
        using var stopWrites = new CancellationTokenSource();
        var writes = WriteUntilAsync(scenario, 1, stopWrites.Token);
        await Task.Delay(500);

        var pause = await WorkerProcess.RunToEndAsync(cli, "subscriptions", "pause", "hook", "--reason", "receiver maintenance");
        Assert.That(pause.ExitCode, Is.Zero, pause.Error);
        await Task.Delay(500); // requests in flight when it paused finish
        var sentBefore = scenario.Receiver.Requests.Count;
        await Task.Delay(1500);
        var sentWhilePaused = scenario.Receiver.Requests.Count - sentBefore;
        var status = await WorkerProcess.RunToEndAsync(cli, "status");
        var resume = await WorkerProcess.RunToEndAsync(cli, "subscriptions", "resume", "hook");
        await Task.Delay(500);
        await stopWrites.CancelAsync();
        await writes;

        Assert.That(sentWhilePaused, Is.Zero, "nothing is sent while paused");
        Assert.That(status.Out, Does.Contain("paused (receiver maintenance)"));
        Assert.That(resume.Out.Trim(), Is.EqualTo("hook: resumed"), resume.Error);
        await AssertEverythingDeliveredAsync(scenario, "hook");
    }

    [Test]
    public async Task A_file_that_names_another_groups_subscription_is_refused_naming_both_and_changes_nothing()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        var billing = WriteConfig(scenario, "billing", "shared");
        await using (var owner = WorkerProcess.Start(scenario.DatabaseUrl, billing.Path, billing.HttpPort))
        {
            await owner.WaitUntilReadyAsync();
            Assert.That(await owner.TerminateAsync(), Is.Zero, owner.Output);
        }

        var other = WriteConfig(scenario, "shipping", "mine", "shared");
        await using var intruder = WorkerProcess.Start(scenario.DatabaseUrl, other.Path, other.HttpPort);

        Assert.That(await intruder.WaitForExitAsync(TimeSpan.FromSeconds(60)), Is.EqualTo(2), intruder.Output);
        Assert.That(intruder.Output, Does.Contain("subscription 'shared' belongs to group 'billing', not to this file's group 'shipping'"));
        Assert.That(await scenario.Database.ScalarAsync<string>("SELECT string_agg(name || ':' || group_name || ':' || enabled, ',' ORDER BY name) FROM trigger_events.subscriptions"),
            Is.EqualTo("shared:billing:true"), "nothing of the refused file was registered");
    }

    [Test]
    public async Task One_groups_retention_keeps_what_another_group_keeps_until_that_groups_worker_says_otherwise()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        var configA = WriteConfig(scenario, "team-a", "a-hook");
        File.AppendAllText(configA.Path, "\nretention:\n  delivered_events: 0s\n  attempts: 0s\n  cleanup_interval: 200ms\n");
        var configB = WriteConfig(scenario, "team-b", "b-hook");
        File.AppendAllText(configB.Path, "\nretention:\n  delivered_events: forever\n  attempts: forever\n");
        await using var teamB = WorkerProcess.Start(scenario.DatabaseUrl, configB.Path, configB.HttpPort);
        await using var teamA = WorkerProcess.Start(scenario.DatabaseUrl, configA.Path, configA.HttpPort);
        await Task.WhenAll(teamA.WaitUntilReadyAsync(), teamB.WaitUntilReadyAsync());
        // Each event's first request fails: its attempt record is what retention keeps or deletes
        // (a success is recorded on its delivery, which goes with its event).
        scenario.Receiver.Respond = request => request.Attempt == 1 ? new ReceiverResponse(500) : ReceiverResponse.Ok;
        await scenario.InsertOrdersAsync(1, 100);
        await AssertEverythingDeliveredAsync(scenario, "a-hook", "b-hook");

        // Team A's worker runs retention five times a second with bounds of zero: its own attempt
        // records go, and nothing team B keeps.
        await WaitUntilAsync(scenario, "SELECT count(*) = 0 FROM trigger_events.attempts a JOIN trigger_events.subscriptions s ON s.id = a.subscription_id WHERE s.name = 'a-hook'",
            "team-a's attempt records deleted");
        await Task.Delay(1000);
        Assert.That(await scenario.Database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log"), Is.EqualTo(100), "team-b keeps the events forever");
        Assert.That(await scenario.Database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.attempts"), Is.EqualTo(100), "team-b's attempt records");

        // Team B's next release keeps nothing: once its worker has started, team A's retention
        // deletes the events and team B's records too.
        Assert.That(await teamB.TerminateAsync(), Is.Zero, teamB.Output);
        var configBAgain = WriteConfig(scenario, "team-b", "b-hook");
        File.AppendAllText(configBAgain.Path, "\nretention:\n  delivered_events: 0s\n  attempts: 0s\n  cleanup_interval: 1h\n");
        await using var teamBAgain = WorkerProcess.Start(scenario.DatabaseUrl, configBAgain.Path, configBAgain.HttpPort);
        await teamBAgain.WaitUntilReadyAsync();
        await WaitUntilAsync(scenario, "SELECT (SELECT count(*) FROM trigger_events.event_log) + (SELECT count(*) FROM trigger_events.attempts) = 0",
            "every event and attempt record deleted once team-b recorded its new bounds");
    }

    [Test]
    public async Task A_busy_groups_worker_leaves_the_wake_up_another_groups_idle_worker_armed()
    {
        await using var scenario = await WorkerScenario.CreateAsync();
        // Team A's orders come without a wake-up (notify off): its worker finds them by polling
        // and, busy, used to clear the flag team B's idle worker had armed.
        await scenario.Database.ScalarAsync<string>($"SELECT trigger_events.attach('orders', '{scenario.Trigger}', notify => false)");
        await scenario.Database.ExecuteAsync("CREATE TABLE invoices (id int PRIMARY KEY)");
        await scenario.Database.ScalarAsync<string>("SELECT trigger_events.attach('invoices', 'invoices_changed')");
        scenario.Receiver.Respond = r => r.Path == "/a-hook" ? new ReceiverResponse(200, TimeSpan.FromMilliseconds(100)) : ReceiverResponse.Ok;
        (string Path, int Port) Config(string group, string name, string trigger, string pollInterval)
        {
            var port = Loopback.FreePort();
            var file = Path.Combine(scenario.Directory, $"{group}.yaml");
            File.WriteAllText(file, $"""
                subscriptions:
                  - name: {name}
                    trigger: {trigger}
                    max_in_flight: 2
                    webhook:
                      url: {scenario.Receiver.Url("/" + name)}
                      timeout: 5s
                worker:
                  group: {group}
                  http_port: {port}
                  poll_interval: {pollInterval}
                """);
            return (file, port);
        }

        var teamAConfig = Config("team-a", "a-hook", scenario.Trigger, "200ms");
        // Team B polls every minute: only a wake-up brings its event within the test's patience.
        var teamBConfig = Config("team-b", "b-hook", "invoices_changed", "60s");
        await using var teamA = WorkerProcess.Start(scenario.DatabaseUrl, teamAConfig.Path, teamAConfig.Port);
        await using var teamB = WorkerProcess.Start(scenario.DatabaseUrl, teamBConfig.Path, teamBConfig.Port);
        await Task.WhenAll(teamA.WaitUntilReadyAsync(), teamB.WaitUntilReadyAsync());
        await Task.Delay(1000); // both have said they are idle

        // About ten seconds of work for team A, two requests of 100 ms at a time.
        await scenario.InsertOrdersAsync(1, 200);
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds("/a-hook").Count >= 5, Patience, "team A at work");
        await scenario.Database.ExecuteAsync("INSERT INTO invoices VALUES (1)");
        // Within half of team B's poll interval: woken.
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds("/b-hook").Count == 1, TimeSpan.FromSeconds(30), "team B's event, woken");

        Assert.That(scenario.Receiver.DeliveredEventIds("/a-hook").Count, Is.LessThan(200), "team A was still draining when team B's event came");
    }

    private static async Task WaitUntilAsync(WorkerScenario scenario, string condition, string what)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!await scenario.Database.ScalarAsync<bool>(condition))
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), $"timed out waiting: {what}");
            await Task.Delay(100);
        }
    }
}
