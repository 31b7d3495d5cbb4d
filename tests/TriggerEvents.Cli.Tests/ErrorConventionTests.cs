using System.Net;
using System.Net.Sockets;
using Npgsql;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary>
/// The README's convention for errors and exit codes, through the real executable: one line on
/// stderr (a stack trace only with --verbose), 1 for what failed, 2 for what was asked wrongly,
/// including a name that does not exist, whichever command it was given to.
/// </summary>
public sealed class ErrorConventionTests
{
    private static void AssertOneLine(Cli.Result result)
    {
        Assert.That(result.Error.Trim().Split('\n'), Has.Length.EqualTo(1), result.ToString());
        Assert.That(result.Error, Does.StartWith("triggerevents: "), result.ToString());
        Assert.That(result.Error, Does.Not.Contain("   at "), result.ToString());
    }

    [TestCase("attach", "orders", "--trigger", "orders_changed")]
    [TestCase("detach", "orders_changed")]
    [TestCase("triggers")]
    [TestCase("status")]
    [TestCase("dead", "list")]
    [TestCase("dead", "retry", "--subscription", "hook")]
    [TestCase("replay", "--subscription", "hook", "--since", "1h")]
    [TestCase("invoke", "--trigger", "orders_changed", "--payload", "{}")]
    [TestCase("cleanup", "--older-than", "7d", "--attempts-older-than", "7d")]
    [TestCase("backfill", "--trigger", "orders_changed")]
    public async Task Before_migrate_every_database_command_says_to_run_migrate_first_in_one_line_and_exits_1(params string[] command)
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");

        var result = await new Cli(database.ConnectionString).RunAsync(command);

        Assert.That(result.ExitCode, Is.EqualTo(1), result.ToString());
        AssertOneLine(result);
        Assert.That(result.Error.Trim(), Is.EqualTo("triggerevents: the trigger_events schema is not installed in this database: run 'triggerevents migrate' first"));
    }

    [TestCase("detach", "nope")]
    [TestCase("invoke", "--trigger", "nope", "--payload", "{}")]
    [TestCase("dead", "list", "--subscription", "nope")]
    [TestCase("dead", "retry", "--subscription", "nope")]
    [TestCase("dead", "purge", "--subscription", "nope")]
    [TestCase("replay", "--subscription", "nope", "--since", "1h")]
    [TestCase("replay", "--subscription", "hook", "--since", "1h", "--trigger", "nope")]
    [TestCase("backfill", "--trigger", "nope")]
    [TestCase("backfill", "--trigger", "orders_changed", "--subscription", "nope")]
    [TestCase("attach", "nope", "--trigger", "t")]
    [TestCase("attach", "orders", "--trigger", "t", "--update-columns", "nope")]
    public async Task A_name_that_does_not_exist_exits_2_from_every_command_and_changes_nothing(params string[] command)
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('hook', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'dead'");

        var result = await new Cli(database.ConnectionString).RunAsync(command);

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        AssertOneLine(result);
        Assert.That(result.Error, Does.Contain("nope"));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log"), Is.EqualTo(1));
        Assert.That(await database.ScalarAsync<string>("SELECT string_agg(status::text, ',') FROM trigger_events.deliveries"), Is.EqualTo("dead"));
        Assert.That(await database.ScalarAsync<string>("SELECT string_agg(name, ',') FROM trigger_events.triggers"), Is.EqualTo("orders_changed"));
    }

    [TestCase(new[] { "stauts" }, "unknown command 'stauts': did you mean 'triggerevents status'?")]
    [TestCase(new[] { "replya", "--since", "1h" }, "unknown command 'replya': did you mean 'triggerevents replay'?")]
    [TestCase(new[] { "dead", "lst" }, "unknown command 'lst': did you mean 'triggerevents dead list'?")]
    [TestCase(new[] { "frobnicate" }, "unknown command 'frobnicate': the commands are migrate, attach,")]
    [TestCase(new[] { "dead" }, "'triggerevents dead' needs a command: list, retry, purge")]
    public async Task An_unknown_or_missing_command_is_one_error_with_the_nearest_command(string[] arguments, string expected)
    {
        var result = await new Cli(null).RunAsync(arguments);

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        AssertOneLine(result);
        Assert.That(result.Error, Does.StartWith("triggerevents: " + expected));
        Assert.That(result.Error, Does.Not.Contain("Required command was not provided"));
    }

    [Test]
    public async Task Several_usage_errors_are_still_one_line_that_points_at_the_commands_help()
    {
        var result = await new Cli(null).RunAsync("replay");

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        AssertOneLine(result);
        Assert.That(result.Error.Trim(), Is.EqualTo("triggerevents: Option '--subscription' is required; Option '--since' is required; see 'triggerevents replay --help'"));
    }

    [Test]
    public async Task A_role_without_usage_on_the_schema_is_told_the_grant_it_lacks_by_commands_and_by_run()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var role = await LoginRole.CreateAsync(database);

        var status = await new Cli(role.ConnectionString).RunAsync("status");
        var verbose = await new Cli(role.ConnectionString).RunAsync("status", "--verbose");
        var run = await RunToExitAsync(role.ConnectionString, Loopback.FreePort());

        Assert.That(status.ExitCode, Is.EqualTo(1), status.ToString());
        AssertOneLine(status);
        Assert.That(status.Error.Trim(), Is.EqualTo(
            $"triggerevents: permission denied for schema trigger_events (42501): the role {role.Name} lacks USAGE ON SCHEMA trigger_events; " +
            $"a schema owner can run: GRANT USAGE ON SCHEMA trigger_events TO {role.Name};"));
        Assert.That(verbose.Error, Does.Contain("   at "), "--verbose adds the stack trace");
        Assert.That(run.ExitCode, Is.EqualTo(1), run.Output);
        Assert.That(run.Output, Does.Contain($"GRANT USAGE ON SCHEMA trigger_events TO {role.Name};"));
        Assert.That(run.Output, Does.Not.Contain("not reachable"), "a permission error is not waited out as an outage");
        Assert.That(run.Output, Does.Not.Contain("   at "));
    }

    [Test]
    public async Task A_worker_whose_role_loses_a_right_while_it_runs_stops_naming_the_grant_and_loses_nothing()
    {
        await using var setup = await OrdersWorker.CreateAsync();
        var (database, receiver, port, path) = setup;
        int exitCode;
        string output;
        await using (var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port))
        {
            await worker.WaitUntilReadyAsync();
            // As an upgrade that did not carry a grant over to the role would leave it.
            await database.ExecuteAsync($"REVOKE USAGE ON SEQUENCE trigger_events.delivery_order FROM {Migrator.WorkerRole}");
            await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
            exitCode = await worker.WaitForExitAsync(TimeSpan.FromSeconds(60));
            output = worker.Output;
        }

        Assert.That(exitCode, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain($"GRANT USAGE ON SEQUENCE trigger_events.delivery_order TO {Migrator.WorkerRole};"), output);
        Assert.That(output, Does.Not.Contain("   at "));
        Assert.That(receiver.Requests, Is.Empty);

        await database.ExecuteAsync($"GRANT USAGE ON SEQUENCE trigger_events.delivery_order TO {Migrator.WorkerRole}");
        await using var again = WorkerProcess.Start(database.WorkerConnectionString, path, port);
        await again.WaitUntilReadyAsync();
        await receiver.WaitUntilAsync(r => r.Requests.Count > 0, TimeSpan.FromSeconds(30), "the event captured while the worker lacked the grant to be delivered");

        Assert.That(receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1 }));
    }

    [Test]
    public async Task A_worker_that_may_no_longer_record_results_stops_naming_the_grant_and_the_event_is_sent_again()
    {
        await using var setup = await OrdersWorker.CreateAsync();
        var (database, receiver, port, path) = setup;
        int exitCode;
        string output;
        await using (var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port))
        {
            await worker.WaitUntilReadyAsync();
            // Claims need nothing of attempts; only the result write inserts there.
            await database.ExecuteAsync($"REVOKE INSERT ON trigger_events.attempts FROM {Migrator.WorkerRole}");
            await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
            exitCode = await worker.WaitForExitAsync(TimeSpan.FromSeconds(60));
            output = worker.Output;
        }

        Assert.That(exitCode, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain($"GRANT INSERT ON trigger_events.attempts TO {Migrator.WorkerRole};"), output);
        Assert.That(receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1 }), "sent once, its result refused");
        Assert.That(
            await database.ScalarAsync<string>("SELECT status::text || ' ' || attempts FROM trigger_events.deliveries"),
            Is.EqualTo("pending 1"), "given back at the stop, its attempt kept, instead of a lease kept alive");

        await database.ExecuteAsync($"GRANT INSERT ON trigger_events.attempts TO {Migrator.WorkerRole}");
        await using var again = WorkerProcess.Start(database.WorkerConnectionString, path, port);
        await again.WaitUntilReadyAsync();
        for (var waited = 0; await database.ScalarAsync<string>("SELECT status::text FROM trigger_events.deliveries") != "delivered"; waited++)
        {
            Assert.That(waited, Is.LessThan(300), "the event whose result was refused was never delivered again");
            await Task.Delay(100);
        }

        Assert.That(receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1, 1 }), "at least once: sent again");
    }

    [Test]
    public async Task A_worker_that_may_no_longer_record_results_stops_also_while_it_sends_a_delivery_taken_over_alone()
    {
        // A delivery a dead worker held, its lease over: the next worker takes it over and sends
        // it alone, waiting for its result to be written before anything else. That wait must end
        // when the write is refused, or the worker would keep its leases alive for ever.
        await using var setup = await OrdersWorker.CreateAsync();
        var (database, receiver, port, path) = setup;
        await using (var first = WorkerProcess.Start(database.WorkerConnectionString, path, port))
        {
            await first.WaitUntilReadyAsync();
            Assert.That(await first.TerminateAsync(), Is.Zero, first.Output);
        }

        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await database.FanOutAsync();
        await database.ExecuteAsync(
            "UPDATE trigger_events.deliveries SET status = 'in_flight', lease_owner = gen_random_uuid(), attempts = 1, next_attempt_at = now() - interval '1 second'");
        // Answered late enough for the grant to go first.
        receiver.Respond = _ => new ReceiverResponse(200, TimeSpan.FromSeconds(3));
        int exitCode;
        string output;
        await using (var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port))
        {
            await worker.WaitUntilReadyAsync();
            await database.ExecuteAsync($"REVOKE INSERT ON trigger_events.attempts FROM {Migrator.WorkerRole}");
            exitCode = await worker.WaitForExitAsync(TimeSpan.FromSeconds(60));
            output = worker.Output;
        }

        Assert.That(exitCode, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain($"GRANT INSERT ON trigger_events.attempts TO {Migrator.WorkerRole};"), output);
        Assert.That(receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1 }), "taken over and sent once, its result refused");
    }

    [Test]
    public async Task A_worker_whose_server_turns_read_only_stops_saying_so_and_delivers_once_it_takes_writes()
    {
        await using var setup = await OrdersWorker.CreateAsync();
        var (database, receiver, port, path) = setup;
        int exitCode;
        string output;
        await using (var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port))
        {
            await worker.WaitUntilReadyAsync();
            // As a standby would answer after a failover left the worker's connections there:
            // the worker's sessions from now on take no writes.
            await database.ExecuteAsync($"ALTER ROLE {Migrator.WorkerRole} IN DATABASE {database.Name} SET default_transaction_read_only = on");
            await database.ExecuteAsync($"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database.Name}' AND usename = '{Migrator.WorkerRole}'");
            await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
            exitCode = await worker.WaitForExitAsync(TimeSpan.FromSeconds(60));
            output = worker.Output;
        }

        Assert.That(exitCode, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain("takes no writes").And.Contain("Target Session Attributes=read-write"), output);
        Assert.That(output, Does.Not.Contain("   at "));
        Assert.That(receiver.Requests, Is.Empty);

        await database.ExecuteAsync($"ALTER ROLE {Migrator.WorkerRole} IN DATABASE {database.Name} RESET default_transaction_read_only");
        await using var again = WorkerProcess.Start(database.WorkerConnectionString, path, port);
        await again.WaitUntilReadyAsync();
        await receiver.WaitUntilAsync(r => r.Requests.Count > 0, TimeSpan.FromSeconds(30), "the event captured while the server took no writes to be delivered");

        Assert.That(receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1 }));
    }

    [Test]
    public async Task A_role_whose_transactions_default_to_repeatable_read_is_refused_with_the_statement_that_mends_it()
    {
        await using var setup = await OrdersWorker.CreateAsync();
        var (database, receiver, port, path) = setup;
        // As a DBA who wants every transaction of the database to see one snapshot would set it.
        await database.ExecuteAsync($"ALTER ROLE {Migrator.WorkerRole} IN DATABASE {database.Name} SET default_transaction_isolation = 'repeatable read'");
        int exitCode;
        string output;
        await using (var worker = WorkerProcess.Start(database.WorkerConnectionString, path, port))
        {
            exitCode = await worker.WaitForExitAsync(TimeSpan.FromSeconds(60));
            output = worker.Output;
        }

        var cleanup = await new Cli(database.WorkerConnectionString).RunAsync("cleanup", "--config", path);
        var replay = await new Cli(database.WorkerConnectionString).RunAsync("replay", "--subscription", "hook", "--since", "2000-01-01");

        Assert.That(exitCode, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain("REPEATABLE READ").And.Contain("READ COMMITTED"), output);
        Assert.That(output, Does.Not.Contain("   at "));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.subscriptions"), Is.Zero, "refused before it registered anything");
        foreach (var refused in new[] { cleanup, replay })
        {
            Assert.That(refused.ExitCode, Is.EqualTo(1), refused.ToString());
            AssertOneLine(refused);
            Assert.That(refused.Error, Does.Contain("REPEATABLE READ"));
        }

        // The statement the line gives mends it.
        var mend = output[(output.IndexOf("can run: ", StringComparison.Ordinal) + "can run: ".Length)..];
        mend = mend[..(mend.IndexOf(';', StringComparison.Ordinal) + 1)];
        Assert.That(mend, Does.StartWith($"ALTER ROLE {Migrator.WorkerRole} IN DATABASE "));
        await database.ExecuteAsync(mend);
        await using var again = WorkerProcess.Start(database.WorkerConnectionString, path, port);
        await again.WaitUntilReadyAsync();
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await receiver.WaitUntilAsync(r => r.Requests.Count > 0, TimeSpan.FromSeconds(30), "the event to be delivered once the role was mended");

        Assert.That(receiver.Requests.Select(r => r.EventId), Is.EqualTo(new long?[] { 1 }));
    }

    /// <summary>A migrated database with <c>orders</c> attached, a receiver, and a worker file posting to it; disposed with them.</summary>
    private sealed record OrdersWorker(TestDatabase Database, WebhookReceiver Receiver, int Port, string Path) : IAsyncDisposable
    {
        public static async Task<OrdersWorker> CreateAsync()
        {
            var database = await TestDatabase.CreateAsync();
            await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
            await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
            var receiver = await WebhookReceiver.StartAsync();
            var port = Loopback.FreePort();
            var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"{Guid.NewGuid():N}.yaml");
            await File.WriteAllTextAsync(path, $"""
                subscriptions:
                  - name: hook
                    trigger: orders_changed
                    webhook:
                      url: {receiver.Url()}
                worker:
                  http_port: {port}
                  poll_interval: 200ms
                """);
            return new OrdersWorker(database, receiver, port, path);
        }

        public async ValueTask DisposeAsync()
        {
            File.Delete(Path);
            await Receiver.DisposeAsync();
            await Database.DisposeAsync();
        }
    }

    [Test]
    public async Task Migrate_as_a_role_without_rights_fails_in_one_line_and_changes_nothing()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await using var role = await LoginRole.CreateAsync(database);

        var migrate = await new Cli(role.ConnectionString).RunAsync("migrate");

        Assert.That(migrate.ExitCode, Is.EqualTo(1), migrate.ToString());
        AssertOneLine(migrate);
        Assert.That(migrate.Error, Does.Contain("permission denied").And.Contain(role.Name));
        Assert.That(await database.ScalarAsync<bool>("SELECT to_regnamespace('trigger_events') IS NULL"), Is.True);
    }

    [Test]
    public async Task A_role_with_usage_but_no_table_rights_is_told_which_privileges_on_which_table_it_lacks()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var role = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT USAGE ON SCHEMA trigger_events TO {role.Name}");
        await database.ExecuteAsync($"GRANT SELECT ON trigger_events.deliveries, trigger_events.event_log TO {role.Name}");

        var retry = await new Cli(role.ConnectionString).RunAsync("dead", "retry", "--id", "1");

        Assert.That(retry.ExitCode, Is.EqualTo(1), retry.ToString());
        AssertOneLine(retry);
        Assert.That(retry.Error, Does.Match(
            $@"permission denied for table (\w+) \(42501\): the role {role.Name} lacks [A-Z, ]+ ON trigger_events\.\1; a schema owner can run: GRANT [A-Z, ]+ ON trigger_events\.\1 TO {role.Name};"));
        Assert.That(retry.Error, Does.Not.Contain("lacks SELECT ON trigger_events.deliveries"), "only what is missing is named");
    }

    [Test]
    public async Task Run_on_a_port_in_use_says_so_in_one_line_naming_the_setting_without_a_stack_trace()
    {
        await using var migrated = await TestDatabase.CreateAsync();
        using var taken = new TcpListener(IPAddress.Any, 0);
        taken.Start();
        var takenPort = ((IPEndPoint)taken.LocalEndpoint).Port;

        var portInUse = await RunToExitAsync(migrated.ConnectionString, takenPort);

        Assert.That(portInUse.ExitCode, Is.EqualTo(1), portInUse.Output);
        Assert.That(ErrorLines(portInUse.Output), Has.Count.EqualTo(1), portInUse.Output);
        Assert.That(ErrorLines(portInUse.Output)[0], Does.StartWith($"worker.http_port {takenPort} of ").And.Contain("is already in use"));
        Assert.That(portInUse.Output, Does.Not.Contain("   at "));
    }

    /// <summary>The error lines of a worker's text output, without their time and level: logged errors and the command's own line.</summary>
    private static List<string> ErrorLines(string output) =>
    [
        .. output.Split('\n')
            .Select(line => line.Split(' ', 3) is [_, "ERR" or "FTL", var message] ? message
                : line.StartsWith("triggerevents: ", StringComparison.Ordinal) ? line["triggerevents: ".Length..]
                : null)
            .OfType<string>()
            .Select(line => line.TrimEnd()),
    ];

    /// <summary>Runs a worker with a minimal configuration until it exits by itself.</summary>
    private static async Task<(int ExitCode, string Output)> RunToExitAsync(string connectionString, int httpPort)
    {
        var path = Path.Combine(Path.GetTempPath(), $"{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(path, $"subscriptions: []\nworker:\n  http_port: {httpPort}\n");
        try
        {
            await using var worker = WorkerProcess.Start(connectionString, path, httpPort);
            var exitCode = await worker.WaitForExitAsync(TimeSpan.FromSeconds(60));
            return (exitCode, worker.Output);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
