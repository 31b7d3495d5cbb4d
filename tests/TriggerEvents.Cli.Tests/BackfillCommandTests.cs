using System.Globalization;
using System.Text.Json;
using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary><c>triggerevents backfill</c> through the real executable: resuming after a kill, the output, refusals.</summary>
public sealed class BackfillCommandTests
{
    private TestDatabase database = null!;
    private Cli cli = null!;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        cli = new Cli(database.ConnectionString);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL)");
        await database.ExecuteAsync("INSERT INTO orders SELECT g, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'new' END FROM generate_series(1, 10000) g");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('billing', 'orders_changed'), ('audit', 'orders_changed')");
    }

    [TearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private Task<long> CountAsync(string sql) => database.ScalarAsync<long>(sql);

    [Test]
    public async Task A_backfill_killed_midway_continues_when_run_again_and_gives_every_row_exactly_once()
    {
        string[] command = ["backfill", "--trigger", "orders_changed", "--rate", "2000/s", "--chunk-size", "100"];
        await using (var first = WorkerProcess.StartCommand(new Dictionary<string, string?> { ["TRIGGER_EVENTS_DATABASE_URL"] = database.ConnectionString }, command))
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            while (await CountAsync("SELECT coalesce(max(rows_read), 0) FROM trigger_events.backfills") < 2000)
            {
                Assert.That(first.HasExited, Is.False, first.Output);
                await Task.Delay(20, deadline.Token);
            }

            await first.KillAsync();
        }

        var doneBeforeKill = await CountAsync("SELECT rows_read FROM trigger_events.backfills");
        var eventsBeforeKill = await CountAsync("SELECT count(*) FROM trigger_events.event_log");
        var second = await cli.RunAsync(command);

        Assert.That(doneBeforeKill, Is.InRange(2000, 9999));
        Assert.That(eventsBeforeKill, Is.EqualTo(doneBeforeKill), "a chunk's events and its place commit together");
        Assert.That(second.ExitCode, Is.Zero, second.ToString());
        Assert.That(second.Out, Does.Contain(string.Create(CultureInfo.InvariantCulture, $"Resuming the backfill of orders_changed after {doneBeforeKill:N0} rows read.")));
        Assert.That(second.Out, Does.Contain(string.Create(CultureInfo.InvariantCulture, $"Backfill of orders_changed done: 10,000 rows read, 10,000 READ events for 2 subscriptions receiving READ ({10_000 - doneBeforeKill:N0} rows in this run).")));
        Assert.That(await CountAsync("SELECT count(*) FROM trigger_events.event_log WHERE op = 'READ'"), Is.EqualTo(10_000));
        Assert.That(await CountAsync("SELECT count(DISTINCT new_data ->> 'id') FROM trigger_events.event_log"), Is.EqualTo(10_000));
    }

    [Test]
    public async Task A_backfill_stopped_by_sigterm_rolls_its_chunk_back_and_says_how_to_continue()
    {
        await using var backfill = WorkerProcess.StartCommand(
            new Dictionary<string, string?> { ["TRIGGER_EVENTS_DATABASE_URL"] = database.ConnectionString },
            "backfill", "--trigger", "orders_changed", "--rate", "1000/s", "--chunk-size", "100");
        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            while (await CountAsync("SELECT coalesce(max(rows_read), 0) FROM trigger_events.backfills") < 500)
            {
                Assert.That(backfill.HasExited, Is.False, backfill.Output);
                await Task.Delay(20, deadline.Token);
            }
        }

        var exitCode = await backfill.TerminateAsync();
        var done = await CountAsync("SELECT rows_read FROM trigger_events.backfills");

        Assert.That(exitCode, Is.EqualTo(1), backfill.Output);
        Assert.That(backfill.Output, Does.Contain(string.Create(CultureInfo.InvariantCulture,
            $"triggerevents: backfill of orders_changed interrupted after {done:N0} rows read; the same command continues where it stopped")));
        Assert.That(done, Is.LessThan(10_000));
        Assert.That(await CountAsync("SELECT count(*) FROM trigger_events.event_log"), Is.EqualTo(done));
    }

    [Test]
    public async Task A_backfill_for_one_subscription_says_what_it_did_and_run_again_does_nothing_unless_restarted()
    {
        string[] command = ["backfill", "--trigger", "orders_changed", "--subscription", "billing", "--where", "status = 'paid'"];

        var first = await cli.RunAsync(command);
        var again = await cli.RunAsync(command);
        var restarted = await cli.RunAsync([.. command, "--restart", "--json"]);
        await database.FanOutAsync();

        Assert.That(first.ExitCode, Is.Zero, first.ToString());
        Assert.That(first.Out.TrimEnd(), Does.EndWith("Backfill of orders_changed done: 10,000 rows read, 5,000 READ events for billing."));
        Assert.That(first.Out, Does.Contain("backfilling 1,000"), "progress, one line per chunk when not on a terminal");
        Assert.That(again.ExitCode, Is.Zero, again.ToString());
        Assert.That(again.Out, Does.Contain("Nothing to do; --restart starts it over."));
        Assert.That(restarted.ExitCode, Is.Zero, restarted.ToString());
        using var json = JsonDocument.Parse(restarted.Out);
        Assert.That(json.RootElement.GetProperty("subscription").GetString(), Is.EqualTo("billing"));
        Assert.That(json.RootElement.GetProperty("rows_read").GetInt64(), Is.EqualTo(10_000));
        Assert.That(json.RootElement.GetProperty("events").GetInt64(), Is.EqualTo(5000));
        Assert.That(await CountAsync("SELECT count(*) FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id WHERE s.name = 'billing'"), Is.EqualTo(10_000));
        Assert.That(await CountAsync("SELECT count(*) FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id WHERE s.name = 'audit'"), Is.Zero);
    }

    [TestCase(new[] { "--trigger", "nope" }, "triggerevents: no event trigger named 'nope' (see 'triggerevents triggers')")]
    [TestCase(new[] { "--trigger", "orders_changed", "--subscription", "nope" }, "triggerevents: no subscription named 'nope'")]
    [TestCase(new[] { "--trigger", "orders_changed", "--subscription", "inserts-only" }, "triggerevents: trigger_events.backfill: subscription 'inserts-only' does not receive READ events (its operations: INSERT). Add READ to its operations")]
    [TestCase(new[] { "--trigger", "notes_changed" }, "triggerevents: trigger_events.backfill: table public.notes has no primary key")]
    [TestCase(new[] { "--trigger", "orders_changed", "--where", "true; DROP TABLE orders" }, "triggerevents: trigger_events.backfill: invalid filter (--where): syntax error at or near \";\"")]
    [TestCase(new[] { "--trigger", "orders_changed", "--where", "true) END UNION ALL SELECT 1 FROM public.orders WHERE CASE WHEN false THEN (true" }, "triggerevents: trigger_events.backfill: invalid filter (--where): it must be one boolean expression, not more")]
    [TestCase(new[] { "--trigger", "orders_changed", "--where", "id" }, "triggerevents: trigger_events.backfill: invalid filter (--where): argument of WHERE must be type boolean, not type integer")]
    [TestCase(new[] { "--trigger", "orders_changed", "--where", "true /* unfinished" }, "triggerevents: trigger_events.backfill: invalid filter (--where): unterminated /* comment")]
    [TestCase(new[] { "--trigger", "orders_changed", "--where", " " }, "triggerevents: --where is empty")]
    [TestCase(new[] { "--trigger", "orders_changed", "--rate", "fast" }, "triggerevents: --rate: 'fast' is not a rate")]
    [TestCase(new[] { "--trigger", "orders_changed", "--rate", "0/s" }, "triggerevents: --rate: '0/s' is not a rate")]
    [TestCase(new[] { "--trigger", "orders_changed", "--chunk-size", "0" }, "triggerevents: --chunk-size: give a number of rows from 1 to 100,000")]
    public async Task Bad_input_is_one_line_exit_2_and_records_nothing(string[] arguments, string error)
    {
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name, operations) VALUES ('inserts-only', 'orders_changed', '{INSERT}')");
        await database.ExecuteAsync("CREATE TABLE notes (body text)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('notes', 'notes_changed')");

        var result = await cli.RunAsync(["backfill", .. arguments]);

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        Assert.That(result.Error.TrimEnd().Split('\n'), Has.Length.EqualTo(1), result.ToString());
        Assert.That(result.Error.TrimEnd(), Does.StartWith(error));
        Assert.That(await CountAsync("SELECT count(*) FROM orders"), Is.EqualTo(10_000));
        Assert.That(await CountAsync("SELECT count(*) FROM trigger_events.event_log"), Is.Zero);
        Assert.That(await CountAsync("SELECT count(*) FROM trigger_events.backfills"), Is.Zero);
    }
}
