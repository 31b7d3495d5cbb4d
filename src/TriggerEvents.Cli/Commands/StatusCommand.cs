using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli.Commands;

internal static class StatusCommand
{
    public static Command Create()
    {
        var json = CommonOptions.Json();
        var command = new Command("status", """
            Per subscription: pending, retrying, in flight, dead, and the age of the oldest pending event.

            Examples:
              triggerevents status
              triggerevents status --json | jq '.[] | select(.dead > 0)'
            """)
        {
            json,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            await using var dataSource = CommandLine.OpenDatabase();
            var statuses = await StatusQueries.GetSubscriptionStatusAsync(dataSource, cancellationToken);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(statuses, JsonOutput.Default.IReadOnlyListSubscriptionStatus));
                return ExitCodes.Done;
            }

            TextTable.Write(
                ["SUBSCRIPTION", "GROUP", "TRIGGER", "STATE", "PENDING", "RETRYING", "IN FLIGHT", "DEAD", "OLDEST PENDING"],
                statuses.Select(s => new[]
                {
                    s.Subscription, s.Group, s.TriggerName, SubscriptionCommands.DescribeState(s),
                    Count(s.Pending), Count(s.Retrying), Count(s.InFlight), Count(s.Dead),
                    s.OldestPendingAgeSeconds is { } age ? Age(TimeSpan.FromSeconds(age)) : "-",
                }));
            return ExitCodes.Done;
        }));
        return command;
    }

    private static string Count(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    internal static string Age(TimeSpan age) => age.TotalSeconds switch
    {
        < 1 => $"{age.TotalMilliseconds:0}ms",
        < 120 => $"{age.TotalSeconds:0.0}s",
        < 7200 => $"{age.TotalMinutes:0}m",
        < 172800 => $"{age.TotalHours:0.0}h",
        _ => $"{age.TotalDays:0.0}d",
    };
}
