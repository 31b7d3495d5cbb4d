using System.CommandLine;
using Npgsql;
using TriggerEvents.Cli.Commands;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli;

/// <summary>Exit codes of SPEC.md "Command line".</summary>
internal static class ExitCodes
{
    public const int Done = 0;
    public const int Failed = 1;
    public const int BadUsage = 2;
}

/// <summary>A failure the user caused (bad arguments or configuration): exit 2, one line.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The <c>triggerevents</c> command tree. Every action runs through <see cref="RunAction"/>, which
/// turns failures into one line on stderr and an exit code (a stack trace only with --verbose).
/// </summary>
internal static class CommandLine
{
    public static readonly Option<bool> Verbose = new("--verbose")
    {
        Description = "Show stack traces and debug logs.",
        Recursive = true,
    };

    public static async Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("""
            TriggerEvents: committed PostgreSQL row changes, delivered as signed webhooks, at least once.

            The database comes from TRIGGER_EVENTS_DATABASE_URL (a postgres:// URI or an Npgsql
            connection string); the configuration from --config or TRIGGER_EVENTS_CONFIG
            (default triggerevents.yaml).
            """);
        root.Options.Add(Verbose);
        foreach (var command in new[]
        {
            MigrateCommand.Create(), TriggerCommands.Attach(), TriggerCommands.Detach(), TriggerCommands.List(),
            ValidateCommand.Create(), RunCommand.Create(), StatusCommand.Create(), SubscriptionCommands.Create(), DeadCommands.Create(), ReplayCommand.Create(),
            TriggerCommands.Invoke(), CleanupCommand.Create(), BackfillCommand.Create(), HealthcheckCommand.Create(), DemoCommand.Create(),
            ConsoleCommand.Create(),
        })
        {
            root.Subcommands.Add(command);
        }

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            await Console.Error.WriteLineAsync($"triggerevents: {ParseErrors.Describe(parsed)}");
            return ExitCodes.BadUsage;
        }

        // The worker's host handles SIGTERM itself and may take up to shutdown_timeout; the
        // parser's own handler would force an exit after two seconds.
        return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }

    /// <summary>Runs a command body with the house error handling.</summary>
    public static async Task<int> RunAction(ParseResult parse, Func<Task<int>> body)
    {
        var verbose = parse.GetValue(Verbose);
        try
        {
            return await body();
        }
        catch (ConfigException e)
        {
            await Console.Error.WriteLineAsync(e.Message);
            return ExitCodes.BadUsage;
        }
        catch (UsageException e)
        {
            await Console.Error.WriteLineAsync($"triggerevents: {e.Message}");
            return ExitCodes.BadUsage;
        }
        catch (OperationCanceledException)
        {
            await Console.Error.WriteLineAsync("triggerevents: cancelled");
            return ExitCodes.Failed;
        }
        catch (Exception e)
        {
            var message = e switch
            {
                PostgresException pg when DatabaseProblems.IsSchemaMissing(pg) => await DescribeAsync(pg, DatabaseProblems.DescribeSchemaProblemAsync),
                PostgresException pg when DatabaseProblems.IsPermissionDenied(pg) => await DescribeAsync(pg, async (d, e, c) => await DatabaseProblems.DescribePermissionAsync(d, e, c)),
                PostgresException pg => $"{pg.MessageText} ({pg.SqlState})",
                _ => e.Message,
            };
            await Console.Error.WriteLineAsync($"triggerevents: {message.ReplaceLineEndings(" ")}");
            if (verbose)
            {
                await Console.Error.WriteLineAsync(e.ToString());
            }

            return ExitCodes.Failed;
        }
    }

    private static async Task<string> DescribeAsync(
        PostgresException e, Func<NpgsqlDataSource, PostgresException, CancellationToken, Task<string?>> describe)
    {
        // The database is asked (what the role lacks, which schema version it has) on a
        // connection of its own: the failed one may be gone.
        await using var dataSource = OpenDatabase();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        return await describe(dataSource, e, timeout.Token) ?? $"{e.MessageText} ({e.SqlState})";
    }

    /// <summary>
    /// A usage error when the name given for <paramref name="what"/> does not exist: every command
    /// says it the same way, with exit code 2.
    /// </summary>
    public static UsageException NoSuch(string what, string name, string? hint = null) =>
        new($"no {what} named '{name}'{(hint is null ? "" : $" ({hint})")}");

    /// <summary>Throws <see cref="NoSuch"/> unless a subscription named <paramref name="name"/> is registered; null passes.</summary>
    public static async Task RequireSubscriptionAsync(NpgsqlDataSource dataSource, string? name, CancellationToken cancellationToken)
    {
        if (name is not null && !await Names.SubscriptionExistsAsync(dataSource, name, cancellationToken))
        {
            throw NoSuch("subscription", name, "a worker registers its configuration's subscriptions when it starts; see 'triggerevents status'");
        }
    }

    /// <summary>
    /// Throws <see cref="NoSuch"/> unless an event trigger named <paramref name="name"/> is attached
    /// (or, with <paramref name="orDetached"/>, still named by a subscription); null passes.
    /// </summary>
    public static async Task RequireTriggerAsync(NpgsqlDataSource dataSource, string? name, CancellationToken cancellationToken, bool orDetached = false)
    {
        if (name is not null && !await (orDetached ? Names.TriggerKnownAsync(dataSource, name, cancellationToken) : Names.TriggerExistsAsync(dataSource, name, cancellationToken)))
        {
            throw NoSuch("event trigger", name, "see 'triggerevents triggers'");
        }
    }

    /// <summary>
    /// The data source for TRIGGER_EVENTS_DATABASE_URL, or a usage error naming it;
    /// <paramref name="tune"/> adjusts the settings given there (it sees them as given).
    /// </summary>
    public static NpgsqlDataSource OpenDatabase(Action<NpgsqlConnectionStringBuilder, string>? tune = null)
    {
        var url = Environment.GetEnvironmentVariable("TRIGGER_EVENTS_DATABASE_URL");
        if (string.IsNullOrWhiteSpace(url))
        {
            throw new UsageException("TRIGGER_EVENTS_DATABASE_URL is not set: give it a postgres:// URI or an Npgsql connection string.");
        }

        string connectionString;
        try
        {
            connectionString = DatabaseUrl.ToConnectionString(url);
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"TRIGGER_EVENTS_DATABASE_URL: {e.Message}");
        }

        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (string.IsNullOrEmpty(builder.ApplicationName))
        {
            builder.ApplicationName = "triggerevents";
        }

        tune?.Invoke(builder, connectionString);
        return NpgsqlDataSource.Create(builder);
    }
}
