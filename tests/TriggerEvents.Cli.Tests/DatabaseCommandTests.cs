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
