using System.CommandLine;
using System.Text.Json;
using Npgsql;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli.Commands;

/// <summary><c>dead list | retry | purge</c>: the dead letters.</summary>
internal static class DeadCommands
{
    public static Command Create()
    {
        var dead = new Command("dead", "Inspect and repair dead-lettered deliveries.");
        dead.Subcommands.Add(List());
        dead.Subcommands.Add(Retry());
        dead.Subcommands.Add(Purge());
        return dead;
    }

    private static Command List()
    {
        var filters = new FilterOptions();
        var json = CommonOptions.Json();
        var limit = new Option<int>("--limit") { Description = "At most this many rows.", DefaultValueFactory = _ => 100 };
        var command = new Command("list", """
            List dead letters with their last status and error.

            Examples:
              triggerevents dead list
              triggerevents dead list --subscription billing-orders --since 1d --json
            """)
        {
            json, limit,
        };
        filters.AddTo(command);
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            if (parse.GetValue(limit) < 1)
            {
                throw new UsageException($"--limit {parse.GetValue(limit)}: give at least 1");
            }

            await using var dataSource = CommandLine.OpenDatabase();
            var filter = filters.Read(parse);
            await CommandLine.RequireSubscriptionAsync(dataSource, filter.Subscription, cancellationToken);
            var rows = await DeadLetters.ListAsync(dataSource, filter, parse.GetValue(limit), cancellationToken);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(rows, JsonOutput.Default.IReadOnlyListDeadLetter));
                // The array is the contract; a script counting it is told on stderr that it is cut.
                if (rows.Count == parse.GetValue(limit) && await DeadLetters.CountAsync(dataSource, filter, cancellationToken) is var all && all > rows.Count)
                {
                    await Console.Error.WriteLineAsync($"triggerevents: {rows.Count} of {all} dead letters listed; --limit {all} lists them all");
                }

                return ExitCodes.Done;
            }

            TextTable.Write(
                ["SUBSCRIPTION", "EVENT", "TRIGGER", "OP", "CAPTURED", "ATTEMPTS", "STATUS", "ERROR"],
                rows.Select(r => new[]
                {
                    r.Subscription, r.EventId.ToString(System.Globalization.CultureInfo.InvariantCulture), r.TriggerName, r.Operation,
                    r.CapturedAt.ToString("u", System.Globalization.CultureInfo.InvariantCulture),
                    r.Attempts.ToString(System.Globalization.CultureInfo.InvariantCulture), r.LastStatus?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-",
                    Shorten(r.LastError),
                }));
            var total = await DeadLetters.CountAsync(dataSource, filter, cancellationToken);
            Console.WriteLine($"{rows.Count} of {total} dead letters shown.");
            return ExitCodes.Done;
        }));
        return command;
    }

    private static Command Retry() => Repair(
        "retry",
        """
        Make dead letters pending again, with a fresh attempt budget.

        Examples:
          triggerevents dead retry --subscription billing-orders
          triggerevents dead retry --id 1042
        """,
        "retrying",
        DeadLetters.RetryAsync,
        count => $"{count} dead letters are pending again.");

    private static Command Purge() => Repair(
        "purge",
        """
        Delete dead letters. The events stay in the log and can be replayed.

        Examples:
          triggerevents dead purge --subscription old-hook --before 30d
        """,
        "purging",
        DeadLetters.PurgeAsync,
        count => $"{count} dead letters purged.");

    /// <summary>A dead-letter change over the filtered rows, in batches, with progress.</summary>
    private static Command Repair(
        string name, string description, string verb,
        Func<NpgsqlDataSource, DeliveryFilter, IProgress<long>, CancellationToken, Task<long>> change,
        Func<long, string> done)
    {
        var filters = new FilterOptions();
        var command = new Command(name, description);
        filters.AddTo(command);
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            await using var dataSource = CommandLine.OpenDatabase();
            var filter = filters.Read(parse);
            await CommandLine.RequireSubscriptionAsync(dataSource, filter.Subscription, cancellationToken);
            var total = await DeadLetters.CountAsync(dataSource, filter, cancellationToken);
            long changed;
            using (var progress = new ProgressLine(verb, total))
            {
                changed = await change(dataSource, filter, progress, cancellationToken);
            }

            Console.WriteLine(done(changed));
            return ExitCodes.Done;
        }));
        return command;
    }

    private static string Shorten(string? error) =>
        error is null ? "" : error.Length <= 60 ? error.ReplaceLineEndings(" ") : error[..57].ReplaceLineEndings(" ") + "...";
}
