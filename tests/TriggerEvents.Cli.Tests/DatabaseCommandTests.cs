using System.Text.Json;
using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary>migrate, attach, detach, triggers, invoke and status through the real executable.</summary>
public sealed class DatabaseCommandTests
{
    [Test]
    public async Task Migrate_installs_then_reports_current_and_print_writes_the_sql()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        var cli = new Cli(database.ConnectionString);

        var first = await cli.RunAsync("migrate");
        var second = await cli.RunAsync("migrate");
        var print = await new Cli(null).RunAsync("migrate", "--print");

        Assert.That(first.ExitCode, Is.Zero, first.ToString());
        var latest = TriggerEvents.Postgres.Migrations.MigrationSource.LatestVersion;
        Assert.That(first.Out, Does.Contain($"Migrated from version 0 to {latest}"));
        Assert.That(second.Out, Does.Contain($"Schema is current (version {latest})"));
        Assert.That(print.ExitCode, Is.Zero, print.ToString());
        Assert.That(print.Out, Does.Contain("CREATE TABLE trigger_events.event_log").And.Contain("CREATE INDEX deliveries_pending").And.Contain("pg_advisory_lock"));
    }

    [Test]
    public async Task Migrate_of_an_earlier_release_refuses_a_newer_schema_saying_whether_its_workers_run_on_it()
    {
        // A rollback's migrate, after the next release's: first a migration that keeps this
        // release's workers working, then one that does not.
        await using var database = await TestDatabase.CreateAsync();
        var cli = new Cli(database.ConnectionString);
        var ours = TriggerEvents.Postgres.Migrations.MigrationSource.LatestVersion;
        await database.ExecuteAsync($"INSERT INTO trigger_events.migrations (version, name, workers_from) VALUES ({ours + 1}, 'next', {ours})");

        var keeps = await cli.RunAsync("migrate");
        await database.ExecuteAsync($"INSERT INTO trigger_events.migrations (version, name) VALUES ({ours + 2}, 'breaking')");
        var breaks = await cli.RunAsync("migrate");

        Assert.That(keeps.ExitCode, Is.EqualTo(1), keeps.ToString());
        Assert.That(keeps.Error, Does.Contain($"version {ours + 1}, newer than this binary knows ({ours}), and was left as it is")
            .And.Contain("so this release's workers run on it"));
        Assert.That(breaks.ExitCode, Is.EqualTo(1), breaks.ToString());
        Assert.That(breaks.Error, Does.Contain($"needs workers of schema version {ours + 2} or later; upgrade TriggerEvents"));
        Assert.That(await database.ScalarAsync<int>("SELECT max(version) FROM trigger_events.migrations"), Is.EqualTo(ours + 2), "nothing was changed");
    }

    [Test]
    public async Task Migrate_behind_an_open_writer_retries_names_it_and_stops_with_the_earlier_migrations_applied()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await using (var dataSource = Npgsql.NpgsqlDataSource.Create(database.ConnectionString))
        {
            await TriggerEvents.Postgres.Migrations.Migrator.MigrateAsync(dataSource, 20, CancellationToken.None);
        }

        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await using var writer = await database.DataSource.OpenConnectionAsync();
        await using var open = await writer.BeginTransactionAsync();
        await new Npgsql.NpgsqlCommand("INSERT INTO orders VALUES (1)", writer, open).ExecuteNonQueryAsync();
        var cli = new Cli(database.ConnectionString);

        var badTimeout = await cli.RunAsync("migrate", "--lock-timeout", "soon");
        var gaveUp = await cli.RunAsync("migrate", "--lock-timeout", "200ms", "--lock-tries", "2");
        await open.CommitAsync();
        var done = await cli.RunAsync("migrate", "--lock-timeout", "200ms", "--lock-tries", "2");
        TestContext.Out.WriteLine(gaveUp.Error);

        Assert.That(badTimeout.ExitCode, Is.EqualTo(2), badTimeout.ToString());
        Assert.That(badTimeout.Error, Does.Contain("--lock-timeout: 'soon' is not a duration"));
        Assert.That(gaveUp.ExitCode, Is.EqualTo(1), gaveUp.ToString());
        Assert.That(gaveUp.Error, Does.Contain("migration 21 (partitioning_attached_tables) gave up waiting for a lock").And.Contain("try 1 of 2"), gaveUp.ToString());
        Assert.That(gaveUp.Error, Does.Contain("could not take the locks it needs within 0.2s in 2 tries").And.Contain($"pid {writer.ProcessID}"), gaveUp.ToString());
        Assert.That(done.ExitCode, Is.Zero, done.ToString());
        Assert.That(done.Out, Does.Contain($"Migrated from version 20 to {TriggerEvents.Postgres.Migrations.MigrationSource.LatestVersion}"));
    }

    [Test]
    public async Task Attach_is_idempotent_lists_and_detaches_from_a_shell()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE \"Order Items\" (id int PRIMARY KEY, status text, note text)");
        var cli = new Cli(database.ConnectionString);

        var created = await cli.RunAsync("attach", "\"Order Items\"", "--trigger", "items", "--ops", "INSERT,UPDATE", "--update-columns", "status", "--payload-columns", "id", "status", "--when", "NEW.id > 0");
        var again = await cli.RunAsync("attach", "\"Order Items\"", "--trigger", "items", "--ops", "INSERT", "UPDATE", "--update-columns", "status", "--payload-columns", "id,status", "--when", "NEW.id > 0");
        var listed = await cli.RunAsync("triggers", "--json");
        var detached = await cli.RunAsync("detach", "items");

        Assert.That(created.Out.Trim(), Is.EqualTo("items: created"), created.ToString());
        Assert.That(again.Out.Trim(), Is.EqualTo("items: unchanged"), again.ToString());
        using var json = JsonDocument.Parse(listed.Out);
        var trigger = json.RootElement.EnumerateArray().Single();
        Assert.That(trigger.GetProperty("table_name").GetString(), Is.EqualTo("Order Items"));
        Assert.That(trigger.GetProperty("operations").EnumerateArray().Select(o => o.GetString()), Is.EqualTo(new[] { "INSERT", "UPDATE" }));
        Assert.That(detached.Out.Trim(), Is.EqualTo("items: detached"));
    }

    [Test]
    public async Task Subscriptions_lists_pauses_resumes_and_deletes_only_when_confirmed()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, group_name) VALUES ('hook', 'orders_changed', 'billing'), ('gone', 'orders_changed', 'default')");
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET enabled = false, paused_by = 'file', paused_reason = 'not in the file of group default', paused_at = now() WHERE name = 'gone'");
        await database.ExecuteAsync("INSERT INTO orders VALUES (1), (2)");
        await database.FanOutAsync("hook");
        // Four requests in the last minutes, one of them failed, as a worker's result writes count them.
        await database.ExecuteAsync(
            "INSERT INTO trigger_events.attempt_counts (subscription_id, minute, worker, attempts, failures) " +
            "SELECT s.id, date_trunc('minute', now() - interval '2 minutes'), gen_random_uuid(), 4, 1 FROM trigger_events.subscriptions s WHERE s.name = 'hook'");
        // As the worker's role, which the console runs as too: what an operator may do with it.
        var cli = new Cli(database.WorkerConnectionString);

        var paused = await cli.RunAsync("subscriptions", "pause", "hook", "--reason", "receiver maintenance");
        var listed = await cli.RunAsync("subscriptions", "--json");
        var table = await cli.RunAsync("subscriptions");
        var resumeFilePaused = await cli.RunAsync("subscriptions", "resume", "gone");
        var resumed = await cli.RunAsync("subscriptions", "resume", "hook");
        var unconfirmed = await cli.RunAsync("subscriptions", "delete", "hook");
        var unknown = await cli.RunAsync("subscriptions", "pause", "nope");
        var deleted = await cli.RunAsync("subscriptions", "delete", "hook", "--yes");

        Assert.That(paused.Out.Trim(), Is.EqualTo("hook: paused"), paused.ToString());
        using (var json = JsonDocument.Parse(listed.Out))
        {
            var hook = json.RootElement.EnumerateArray().Single(e => e.GetProperty("name").GetString() == "hook");
            Assert.That(hook.GetProperty("group").GetString(), Is.EqualTo("billing"));
            Assert.That(hook.GetProperty("trigger").GetString(), Is.EqualTo("orders_changed"));
            Assert.That(hook.GetProperty("state").GetString(), Is.EqualTo("paused"));
            Assert.That(hook.GetProperty("paused_reason").GetString(), Is.EqualTo("receiver maintenance"));
            Assert.That(hook.GetProperty("circuit").GetString(), Is.EqualTo("closed"));
            Assert.That(hook.GetProperty("pending").GetInt64(), Is.EqualTo(2), "a paused backlog is shown");
            foreach (var key in new[] { "retrying", "in_flight", "dead", "oldest_pending_age_seconds" })
            {
                Assert.That(hook.TryGetProperty(key, out _), Is.True, key);
            }

            Assert.That(hook.GetProperty("attempts_per_minute").GetDouble(), Is.GreaterThan(0), "the rate SPEC asks for");
            Assert.That(hook.GetProperty("delivered_per_minute").GetDouble(), Is.EqualTo(hook.GetProperty("attempts_per_minute").GetDouble() * 3 / 4).Within(0.02));
            Assert.That(hook.GetProperty("failure_rate").GetDouble(), Is.EqualTo(0.25));
            var gone = json.RootElement.EnumerateArray().Single(e => e.GetProperty("name").GetString() == "gone");
            Assert.That(gone.GetProperty("attempts_per_minute").GetDouble(), Is.Zero);
            Assert.That(gone.GetProperty("failure_rate").ValueKind, Is.EqualTo(JsonValueKind.Null));
        }

        Assert.That(table.Out, Does.Contain("DELIVERED/MIN").And.Contain("25%").And.Contain("Rates over the last 5 minutes."), table.ToString());

        Assert.That(resumeFilePaused.ExitCode, Is.EqualTo(2), resumeFilePaused.ToString());
        Assert.That(resumeFilePaused.Error, Does.Contain("not in its group's file"));
        Assert.That(resumed.Out.Trim(), Is.EqualTo("hook: resumed"), resumed.ToString());
        Assert.That(unconfirmed.ExitCode, Is.EqualTo(2), unconfirmed.ToString());
        Assert.That(unconfirmed.Error, Does.Contain("pass --yes"));
        Assert.That(unknown.ExitCode, Is.EqualTo(2), unknown.ToString());
        Assert.That(unknown.Error, Does.Contain("no subscription named 'nope'"));
        Assert.That(deleted.Out.Trim(), Is.EqualTo("hook: deleted, with 2 undelivered and 0 dead deliveries"), deleted.ToString());
        Assert.That(await database.ScalarAsync<long>(
            "SELECT (SELECT count(*) FROM trigger_events.subscriptions WHERE name = 'hook') + (SELECT count(*) FROM trigger_events.deliveries) + (SELECT count(*) FROM trigger_events.subscription_positions sp WHERE NOT EXISTS (SELECT FROM trigger_events.subscriptions s WHERE s.id = sp.subscription_id))"),
            Is.Zero, "the subscription, its deliveries and its place are gone");
    }

    [Test]
    public async Task Triggers_shows_an_unhealthy_trigger_and_attach_repairs_it()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, note text)");
        var cli = new Cli(database.ConnectionString);
        await cli.RunAsync("attach", "orders", "--trigger", "orders-checked", "--when", "(NEW.note)::int > 0");
        await database.ExecuteAsync("ALTER TABLE orders DISABLE TRIGGER \"te_orders-checked_update\"; INSERT INTO orders VALUES (1, 'not a number')");

        var listed = await cli.RunAsync("triggers");
        var repaired = await cli.RunAsync("attach", "orders", "--trigger", "orders-checked", "--when", "(NEW.note)::int > 0");
        var after = await cli.RunAsync("triggers", "--json");

        Assert.That(listed.ExitCode, Is.Zero, listed.ToString());
        var row = listed.Out.Split('\n').Single(l => l.StartsWith("orders-checked", StringComparison.Ordinal));
        Assert.That(row, Does.Contain("disabled").And.Contain("(NEW.note)::int > 0"));
        Assert.That(row.Split(' ', StringSplitOptions.RemoveEmptyEntries), Does.Contain("1"), "one event captured with a condition error");
        Assert.That(listed.Error, Does.Contain("not healthy: orders-checked"));
        Assert.That(repaired.Out.Trim(), Is.EqualTo("orders-checked: repaired"), repaired.ToString());
        using var json = JsonDocument.Parse(after.Out);
        Assert.That(json.RootElement[0].GetProperty("health").GetString(), Is.EqualTo("ok"));
        Assert.That(json.RootElement[0].GetProperty("condition_errors").GetInt64(), Is.EqualTo(1));
    }

    [Test]
    public async Task Attach_and_detach_on_a_busy_table_fail_after_lock_timeout()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        var cli = new Cli(database.ConnectionString);
        await cli.RunAsync("attach", "orders", "--trigger", "orders_changed");
        await using var reader = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await reader.BeginTransactionAsync();
        await new Npgsql.NpgsqlCommand("SELECT count(*) FROM orders", reader, transaction).ExecuteScalarAsync();

        var detach = await cli.RunAsync("detach", "orders_changed", "--lock-timeout", "300ms");
        var badTimeout = await cli.RunAsync("detach", "orders_changed", "--lock-timeout", "soon");

        Assert.That(detach.ExitCode, Is.EqualTo(1), detach.ToString());
        Assert.That(detach.Error, Does.Contain("is busy: could not take its ACCESS EXCLUSIVE lock within"));
        Assert.That(badTimeout.ExitCode, Is.EqualTo(2), badTimeout.ToString());
        Assert.That(badTimeout.Error, Does.Contain("--lock-timeout 'soon' is not a duration"));
        await transaction.CommitAsync();
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.triggers"), Is.EqualTo(1));
    }

    [Test]
    public async Task A_refused_attach_is_one_line_naming_the_problem_and_exit_2()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");

        var result = await new Cli(database.ConnectionString).RunAsync("attach", "orders", "--trigger", "t", "--update-columns", "nope");

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        Assert.That(result.Error.Trim(), Does.StartWith("triggerevents: trigger_events.attach: unknown column nope on public.orders"));
        Assert.That(result.Error.Trim().Split('\n'), Has.Length.EqualTo(1));
    }

    [Test]
    public async Task Invoke_and_status_report_a_pending_manual_event()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('hook', 'orders_changed')");
        var cli = new Cli(database.ConnectionString);

        var invoked = await cli.RunAsync("invoke", "--trigger", "orders_changed", "--payload", """{"id": 7}""");
        var badJson = await cli.RunAsync("invoke", "--trigger", "orders_changed", "--payload", "{not json");
        var table = await cli.RunAsync("status");
        var json = await cli.RunAsync("status", "--json");

        Assert.That(invoked.Out, Does.Match(@"event \d+ captured"), invoked.ToString());
        Assert.That(badJson.ExitCode, Is.EqualTo(2));
        Assert.That(table.Out, Does.Contain("SUBSCRIPTION").And.Contain("hook"));
        using var status = JsonDocument.Parse(json.Out);
        var row = status.RootElement.EnumerateArray().Single();
        Assert.That(row.GetProperty("subscription").GetString(), Is.EqualTo("hook"));
        Assert.That(row.GetProperty("pending").GetInt64(), Is.EqualTo(1));
        Assert.That(row.GetProperty("dead").GetInt64(), Is.Zero);
    }
}
