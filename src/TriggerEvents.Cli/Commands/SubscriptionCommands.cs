using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli.Commands;

/// <summary>
/// One subscription as <c>subscriptions --json</c> prints it (SPEC "Command line"). Circuit is
/// closed, open or half_open; always closed for a subscription without a circuit breaker. The
/// rates are over the last <see cref="ConsoleQueries.RateWindow"/>, as the console's overview
/// gives them; the failure rate is null without attempts.
/// </summary>
internal sealed record SubscriptionSummary(
    string Name, string Group, string Trigger, string State, string? PausedBy, string? PausedReason, DateTime? PausedAt,
    string Circuit, long Pending, long Retrying, long InFlight, long Dead, double? OldestPendingAgeSeconds,
    double DeliveredPerMinute, double AttemptsPerMinute, double? FailureRate);

/// <summary><c>subscriptions [pause | resume | delete]</c>: the lifecycle, from a shell.</summary>
internal static class SubscriptionCommands
{
    public static Command Create()
    {
        var json = CommonOptions.Json();
        var command = new Command("subscriptions", """
            List every subscription in the database, of every group: state (active, or paused and why),
            circuit (closed, open, half_open), backlog. Pausing and resuming lose nothing: a paused subscription keeps its place in the log.

            Examples:
              triggerevents subscriptions
              triggerevents subscriptions pause billing-orders --reason "billing is migrating"
              triggerevents subscriptions resume billing-orders
              triggerevents subscriptions delete old-hook --yes
            """)
        {
            json,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            await using var dataSource = CommandLine.OpenDatabase();
            var statuses = await StatusQueries.GetSubscriptionStatusAsync(dataSource, cancellationToken);
            var rates = (await ConsoleQueries.RatesAsync(dataSource, ConsoleQueries.RateWindow, cancellationToken)).ToDictionary(r => r.Subscription);
            SubscriptionRate? RateOf(string name) => rates.GetValueOrDefault(name);
            if (parse.GetValue(json))
            {
                var summaries = statuses.Select(s => new SubscriptionSummary(
                    s.Subscription, s.Group, s.TriggerName, s.State, s.PausedBy, s.PausedReason, s.PausedAt, s.Circuit,
                    s.Pending, s.Retrying, s.InFlight, s.Dead, s.OldestPendingAgeSeconds,
                    Math.Round(RateOf(s.Subscription)?.DeliveredPerMinute ?? 0, 2), Math.Round(RateOf(s.Subscription)?.AttemptsPerMinute ?? 0, 2),
                    RateOf(s.Subscription)?.FailureRate)).ToList();
                Console.WriteLine(JsonSerializer.Serialize<IReadOnlyList<SubscriptionSummary>>(summaries, JsonOutput.Default.IReadOnlyListSubscriptionSummary));
                return ExitCodes.Done;
            }

            TextTable.Write(
                ["SUBSCRIPTION", "GROUP", "TRIGGER", "STATE", "SINCE", "BACKLOG", "DEAD", "OLDEST PENDING", "DELIVERED/MIN", "FAILED"],
                statuses.Select(s => new[]
                {
                    s.Subscription, s.Group, s.TriggerName, DescribeState(s),
                    s.PausedAt is { } at ? at.ToString("u", CultureInfo.InvariantCulture) : "",
                    (s.Pending + s.Retrying + s.InFlight).ToString("N0", CultureInfo.InvariantCulture),
                    s.Dead.ToString("N0", CultureInfo.InvariantCulture),
                    s.OldestPendingAgeSeconds is { } age ? StatusCommand.Age(TimeSpan.FromSeconds(age)) : "-",
                    (RateOf(s.Subscription)?.DeliveredPerMinute ?? 0).ToString("N1", CultureInfo.InvariantCulture),
                    RateOf(s.Subscription)?.FailureRate is { } failed ? (100 * failed).ToString("0", CultureInfo.InvariantCulture) + "%" : "-",
                }));
            Console.WriteLine($"Rates over the last {ConsoleQueries.RateWindow.TotalMinutes:0} minutes.");
            return ExitCodes.Done;
        }));
        command.Subcommands.Add(Pause());
        command.Subcommands.Add(Resume());
        command.Subcommands.Add(Delete());
        return command;
    }

    /// <summary>"active", "active (circuit open)", or "paused (why)": the same words in status and subscriptions.</summary>
    internal static string DescribeState(SubscriptionStatus status) =>
        status.State != "active" ? $"paused ({status.PausedReason ?? status.PausedBy})"
        : status.Circuit == "closed" ? "active"
        : $"active (circuit {status.Circuit.Replace('_', '-')})";

    private static Command Pause()
    {
        var name = new Argument<string>("NAME") { Description = "The subscription." };
        var reason = new Option<string?>("--reason") { Description = "Why, shown by status and subscriptions." };
        var command = new Command("pause", """
            Stop sending to a subscription until 'resume': nothing is sent, nothing is lost, it keeps its
            place in the log. Requests already in flight finish.

            Examples:
              triggerevents subscriptions pause billing-orders --reason "receiver maintenance until 14:00"
            """)
        {
            name, reason,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            await using var dataSource = CommandLine.OpenDatabase();
            if (!await SubscriptionAdmin.PauseAsync(dataSource, parse.GetValue(name)!, parse.GetValue(reason), cancellationToken))
            {
                throw NoSuchSubscription(parse.GetValue(name)!);
            }

            Console.WriteLine($"{parse.GetValue(name)}: paused");
            return ExitCodes.Done;
        }));
        return command;
    }

    private static Command Resume()
    {
        var name = new Argument<string>("NAME") { Description = "The subscription." };
        var command = new Command("resume", """
            Resume a subscription an operator or its circuit breaker paused: it continues from its place
            in the log with everything committed meanwhile.

            Examples:
              triggerevents subscriptions resume billing-orders
            """)
        {
            name,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            await using var dataSource = CommandLine.OpenDatabase();
            var subscription = parse.GetValue(name)!;
            switch (await SubscriptionAdmin.ResumeAsync(dataSource, subscription, cancellationToken))
            {
                case ResumeResult.NoSuchSubscription:
                    throw NoSuchSubscription(subscription);
                case ResumeResult.NotInItsFile:
                    throw new UsageException(
                        $"{subscription} is paused because it is not in its group's file, so no worker would serve it: add it back to the file and restart that group's workers");
                case ResumeResult.AlreadyActive:
                    Console.WriteLine($"{subscription}: already active");
                    break;
                default:
                    Console.WriteLine($"{subscription}: resumed");
                    break;
            }

            return ExitCodes.Done;
        }));
        return command;
    }

    private static Command Delete()
    {
        var name = new Argument<string>("NAME") { Description = "The subscription." };
        var yes = new Option<bool>("--yes") { Description = "Do not ask: delete." };
        var command = new Command("delete", """
            End a subscription: its undelivered and dead deliveries and its place in the log go with it.
            Asks first on a terminal; elsewhere it needs --yes. The same name in a file later is a new
            subscription (start_from applies).

            Examples:
              triggerevents subscriptions delete old-hook --yes
            """)
        {
            name, yes,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            var subscription = parse.GetValue(name)!;
            await using var dataSource = CommandLine.OpenDatabase();
            await CommandLine.RequireSubscriptionAsync(dataSource, subscription, cancellationToken);
            if (!parse.GetValue(yes))
            {
                if (Console.IsInputRedirected || Console.IsOutputRedirected)
                {
                    throw new UsageException($"deleting {subscription} loses its undelivered events: pass --yes to confirm (not on a terminal, nothing is asked)");
                }

                Console.Write($"Delete {subscription} with its undelivered and dead deliveries? Type its name to confirm: ");
                if (Console.ReadLine()?.Trim() != subscription)
                {
                    Console.WriteLine("Not deleted.");
                    return ExitCodes.BadUsage;
                }
            }

            var deleted = await SubscriptionAdmin.DeleteAsync(dataSource, subscription, cancellationToken)
                ?? throw NoSuchSubscription(subscription);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{subscription}: deleted, with {deleted.Undelivered:N0} undelivered and {deleted.Dead:N0} dead deliveries"));
            return ExitCodes.Done;
        }));
        return command;
    }

    private static UsageException NoSuchSubscription(string name) =>
        CommandLine.NoSuch("subscription", name, "see 'triggerevents subscriptions'");
}
