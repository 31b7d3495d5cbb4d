using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary>
/// <c>cleanup</c> takes its bounds from the configuration file found as <c>run</c> finds it
/// (--config, then TRIGGER_EVENTS_CONFIG, then ./triggerevents.yaml), says which, and deletes
/// nothing that file keeps forever.
/// </summary>
public sealed class RetentionCommandTests
{
    private const string KeepForever = """
        subscriptions: []
        retention:
          delivered_events: forever
          attempts: forever
        """;

    private const string DeleteAll = """
        subscriptions: []
        retention:
          delivered_events: 0s
          attempts: 0s
        """;

    private TestDatabase database = null!;
    private Cli cli = null!;
    private string directory = null!;

    [SetUp]
    public async Task CreateDatabaseWithDeliveredEvents()
    {
        database = await TestDatabase.CreateAsync();
        cli = new Cli(database.ConnectionString);
        directory = Directory.CreateTempSubdirectory("te-retention-").FullName;
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('hook', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 3) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered', delivered_at = now()");
    }

    [TearDown]
    public async Task DropDatabase()
    {
        await database.DisposeAsync();
        Directory.Delete(directory, recursive: true);
    }

    private Task<long> EventsAsync() => database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log");

    private string Write(string name, string yaml)
    {
        var path = Path.Combine(directory, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, yaml);
        return path;
    }

    /// <summary>Runs cleanup in <see cref="directory"/> with only <paramref name="configVariable"/> set (null: unset), as in a container.</summary>
    private Task<Cli.Result> CleanupAsync(string? configVariable, params string[] arguments) =>
        cli.RunInAsync(directory, new() { ["TRIGGER_EVENTS_CONFIG"] = configVariable }, ["cleanup", .. arguments]);

    [Test]
    public async Task With_only_the_variable_set_cleanup_keeps_what_that_file_keeps_forever_and_says_so()
    {
        var path = Write("etc/triggerevents.yaml", KeepForever);

        var result = await CleanupAsync(path);

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(result.Out, Does.Contain($"Retention from {path} (named by TRIGGER_EVENTS_CONFIG)"), result.ToString());
        Assert.That(result.Out, Does.Contain("delivered events: kept forever").And.Contain("attempt records:  kept forever"));
        Assert.That(result.Out, Does.Contain("nothing to delete"));
        Assert.That(await EventsAsync(), Is.EqualTo(3));
    }

    [Test]
    public async Task With_only_the_variable_set_cleanup_deletes_by_the_bounds_of_that_file()
    {
        var path = Write("etc/triggerevents.yaml", DeleteAll);

        var result = await CleanupAsync(path);

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(result.Out, Does.Contain($"Retention from {path} (named by TRIGGER_EVENTS_CONFIG)"));
        Assert.That(result.Out, Does.Contain("delivered events: older than 0s are deleted"));
        Assert.That(result.Out, Does.Contain("Deleted 3 delivered events"), result.ToString());
        Assert.That(await EventsAsync(), Is.Zero);
    }

    [Test]
    public async Task Without_flag_or_variable_cleanup_reads_triggerevents_yaml_in_the_working_directory()
    {
        Write("triggerevents.yaml", KeepForever);

        var result = await CleanupAsync(null);

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(result.Out, Does.Contain("Retention from triggerevents.yaml (named by the default name in the working directory)"), result.ToString());
        Assert.That(await EventsAsync(), Is.EqualTo(3));
    }

    [Test]
    public async Task The_variable_wins_over_the_working_directory_and_the_flag_over_the_variable()
    {
        Write("triggerevents.yaml", DeleteAll);
        var forever = Write("forever.yaml", KeepForever);
        var deleteAll = Write("delete-all.yaml", DeleteAll);

        var variable = await CleanupAsync(forever);
        var keptByVariable = await EventsAsync();
        var flag = await CleanupAsync(forever, "--config", deleteAll);

        Assert.That(variable.Out, Does.Contain($"Retention from {forever}"), variable.ToString());
        Assert.That(keptByVariable, Is.EqualTo(3), "the variable's file keeps events forever");
        Assert.That(flag.Out, Does.Contain($"Retention from {deleteAll} (named by --config)"), flag.ToString());
        Assert.That(flag.Out, Does.Contain("Deleted 3 delivered events"));
        Assert.That(await EventsAsync(), Is.Zero);
    }

    [Test]
    public async Task A_bound_on_the_command_line_overrides_the_file_and_the_other_bound_still_comes_from_it()
    {
        var path = Write("etc/triggerevents.yaml", KeepForever);

        var result = await CleanupAsync(path, "--older-than", "0s");

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(result.Out, Does.Contain("delivered events: older than 0s are deleted (--older-than)"));
        Assert.That(result.Out, Does.Contain("attempt records:  kept forever"));
        Assert.That(result.Out, Does.Contain("Deleted 3 delivered events"), result.ToString());
    }

    [Test]
    public async Task Forever_on_the_command_line_keeps_events_that_the_file_would_delete()
    {
        var path = Write("etc/triggerevents.yaml", DeleteAll);

        var result = await CleanupAsync(path, "--older-than", "forever");

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(result.Out, Does.Contain("Deleted 0 delivered events"), result.ToString());
        Assert.That(await EventsAsync(), Is.EqualTo(3));
    }

    [Test]
    public async Task Without_any_file_and_without_both_bounds_cleanup_is_a_usage_error_and_deletes_nothing()
    {
        var result = await CleanupAsync(null, "--older-than", "0s");

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        Assert.That(result.Error.Trim(), Is.EqualTo("triggerevents: configuration file ./triggerevents.yaml not found: give --config or set TRIGGER_EVENTS_CONFIG"));
        Assert.That(await EventsAsync(), Is.EqualTo(3));
    }

    [Test]
    public async Task A_variable_naming_a_missing_file_is_a_usage_error_even_with_both_bounds_given()
    {
        var missing = Path.Combine(directory, "nope.yaml");

        var result = await CleanupAsync(missing, "--older-than", "0s", "--attempts-older-than", "0s");

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        Assert.That(result.Error.Trim(), Is.EqualTo($"triggerevents: configuration file {missing} (from TRIGGER_EVENTS_CONFIG) not found"));
        Assert.That(await EventsAsync(), Is.EqualTo(3));
    }

    [Test]
    public async Task Both_bounds_on_the_command_line_need_no_file()
    {
        var result = await CleanupAsync(null, "--older-than", "0s", "--attempts-older-than", "forever");

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(result.Out, Does.Contain("Retention from the command line:"));
        Assert.That(result.Out, Does.Contain("Deleted 3 delivered events"), result.ToString());
    }

    [Test]
    public async Task Cleanup_as_the_worker_role_keeps_what_another_group_keeps_forever_and_names_that_group()
    {
        // 'hook' is team-b's, whose worker recorded that it keeps everything; the file is team-a's.
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET group_name = 'team-b'");
        await database.ExecuteAsync("INSERT INTO trigger_events.group_retention (group_name, delivered_events, attempts) VALUES ('team-b', NULL, NULL)");
        var teamA = Write("team-a.yaml", DeleteAll + "\nworker:\n  group: team-a\n");

        var kept = await new Cli(database.WorkerConnectionString).RunInAsync(directory, [], ["cleanup", "--config", teamA]);
        // Team B's operator, for its own group: its recorded bounds give way to the flags.
        var released = await new Cli(database.WorkerConnectionString).RunInAsync(
            directory, [], ["cleanup", "--older-than", "0s", "--attempts-older-than", "0s", "--group", "team-b"]);

        Assert.That(kept.ExitCode, Is.Zero, kept.ToString());
        Assert.That(kept.Out, Does.Contain("kept longer where group team-b subscribes: delivered events forever, attempt records forever"), kept.ToString());
        Assert.That(kept.Out, Does.Contain("Deleted 0 delivered events"), kept.ToString());
        Assert.That(released.Out, Does.Contain("Deleted 3 delivered events"), released.ToString());
        Assert.That(await EventsAsync(), Is.Zero);
    }
}
