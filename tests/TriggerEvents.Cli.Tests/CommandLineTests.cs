using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
namespace TriggerEvents.Cli.Tests;

/// <summary>The command tree itself: help, usage errors, exit codes. No database needed.</summary>
public sealed class CommandLineTests
{
    private static readonly string[] Commands =
        ["migrate", "attach", "detach", "triggers", "validate", "run", "status", "dead", "replay", "invoke", "cleanup", "backfill", "healthcheck", "demo", "console"];

    [Test]
    public async Task Help_lists_every_command()
    {
        var result = await new Cli(null).RunAsync("--help");

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        foreach (var command in Commands)
        {
            Assert.That(result.Out, Does.Contain(command), command);
        }
    }

    [TestCase("migrate")]
    [TestCase("attach")]
    [TestCase("detach")]
    [TestCase("triggers")]
    [TestCase("validate")]
    [TestCase("run")]
    [TestCase("status")]
    [TestCase("dead", "list")]
    [TestCase("dead", "retry")]
    [TestCase("dead", "purge")]
    [TestCase("replay")]
    [TestCase("invoke")]
    [TestCase("cleanup")]
    [TestCase("backfill")]
    [TestCase("healthcheck")]
    [TestCase("demo")]
    [TestCase("console")]
    public async Task Every_command_has_help_with_examples(params string[] command)
    {
        var result = await new Cli(null).RunAsync([.. command, "--help"]);

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(result.Out, Does.Contain("Examples:"));
        Assert.That(result.Out, Does.Contain("triggerevents " + command[0]));
    }

    [TestCase("no-such-command")]
    [TestCase("status", "--no-such-option")]
    [TestCase("attach", "orders")]
    public async Task Bad_usage_exits_2_with_a_short_message_and_no_stack_trace(params string[] arguments)
    {
        var result = await new Cli(null).RunAsync(arguments);

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        Assert.That(result.Error, Does.StartWith("triggerevents: "));
        Assert.That(result.Error, Does.Not.Contain("   at "));
    }

    [Test]
    public async Task A_command_that_needs_the_database_says_which_variable_is_missing()
    {
        var result = await new Cli(null).RunWithAsync(new() { ["TRIGGER_EVENTS_DATABASE_URL"] = null }, "status");

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        Assert.That(result.Error.Trim(), Is.EqualTo("triggerevents: TRIGGER_EVENTS_DATABASE_URL is not set: give it a postgres:// URI or an Npgsql connection string."));
    }

    [Test]
    public async Task An_unreachable_database_is_one_line_and_exit_1_with_the_stack_trace_only_when_verbose()
    {
        var environment = new Dictionary<string, string?> { ["TRIGGER_EVENTS_DATABASE_URL"] = $"postgres://nobody@127.0.0.1:{Loopback.FreePort()}/none" };

        var quiet = await new Cli(null).RunWithAsync(new(environment), "status");
        var verbose = await new Cli(null).RunWithAsync(new(environment), "status", "--verbose");

        Assert.That(quiet.ExitCode, Is.EqualTo(1), quiet.ToString());
        Assert.That(quiet.Error.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(verbose.ExitCode, Is.EqualTo(1), verbose.ToString());
        Assert.That(verbose.Error, Does.Contain("   at "));
    }
}
