using System.CommandLine;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli.Commands;

internal static class ReplayCommand
{
    public static Command Create()
    {
        var subscription = new Option<string>("--subscription", "-s") { Description = "The subscription to deliver to.", Required = true };
        var since = new Option<string>("--since") { Description = "Events captured at or after this time: an ISO time or an age (2h, 7d).", Required = true };
        var until = new Option<string?>("--until") { Description = "Events captured before this time." };
        var before = new Option<string?>("--before") { Description = "The same as --until." };
        var trigger = new Option<string?>("--trigger", "-t") { Description = "Events of this trigger (default: the subscription's)." };
        var id = new Option<long?>("--id") { Description = "Only this event id." };
        var dryRun = new Option<bool>("--dry-run") { Description = "Count what would be replayed; change nothing." };
        var command = new Command("replay", """
            Deliver captured events to a subscription again, including events captured before it
            existed. Deliveries in flight are left to finish; the rest become pending with a fresh
            attempt budget. The webhook-id stays the same as on the first delivery.

            Examples:
              triggerevents replay --subscription billing-orders --since 2026-11-26T00:00:00Z --until 2026-11-27T00:00:00Z
              triggerevents replay --subscription billing-orders --since 2h --dry-run
            """)
        {
            subscription, since, until, before, trigger, id, dryRun,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            var from = FilterOptions.ParseTime(parse.GetValue(since), "--since")!.Value;
            if (parse.GetValue(until) is not null && parse.GetValue(before) is not null)
            {
                throw new UsageException("give --until or --before, not both");
            }

            var to = FilterOptions.ParseTime(parse.GetValue(until) ?? parse.GetValue(before), "--until");
            await using var dataSource = CommandLine.OpenDatabase();
            await WorkerConnection.RequireReadCommittedAsync(dataSource, cancellationToken);
            await CommandLine.RequireSubscriptionAsync(dataSource, parse.GetValue(subscription), cancellationToken);
            await CommandLine.RequireTriggerAsync(dataSource, parse.GetValue(trigger), cancellationToken, orDetached: true);
            var dry = parse.GetValue(dryRun);
            ReplayResult result;
            try
            {
                var count = await Replay.CountAsync(dataSource, parse.GetValue(subscription)!, parse.GetValue(trigger), from, to, parse.GetValue(id), cancellationToken);
                if (dry)
                {
                    Console.WriteLine($"{count} events would be replayed to {parse.GetValue(subscription)}.");
                    return ExitCodes.Done;
                }

                using var progress = new ProgressLine("replaying", count);
                result = await Replay.RunAsync(dataSource, parse.GetValue(subscription)!, parse.GetValue(trigger), from, to, parse.GetValue(id), progress, cancellationToken);
            }
            catch (ArgumentException e)
            {
                throw new UsageException(e.Message);
            }

            Console.WriteLine($"{result.Events} events replayed to {parse.GetValue(subscription)}: {result.Scheduled} scheduled, {result.Events - result.Scheduled} already in flight.");
            return ExitCodes.Done;
        }));
        return command;
    }
}
