using System.CommandLine;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli.Commands;

/// <summary>
/// <c>triggerevents cleanup</c>: retention now, with the bounds the worker would use. It reads the
/// configuration file exactly as <c>run</c> does, so an audit trail the team keeps <c>forever</c>
/// is not deleted by an operator who ran it without --config in a container.
/// </summary>
internal static class CleanupCommand
{
    public static Command Create()
    {
        var olderThan = new Option<string?>("--older-than")
        {
            Description = "Delete delivered events older than this, or 'forever' to keep them (default: retention.delivered_events of the configuration).",
        };
        var attemptsOlderThan = new Option<string?>("--attempts-older-than")
        {
            Description = "Delete attempt records older than this, or 'forever' to keep them (default: retention.attempts of the configuration).",
        };
        var groupOption = new Option<string?>("--group")
        {
            Description = "The group this run speaks for, whose own recorded bounds give way to this run's (default: worker.group of the configuration, else 'default').",
        };
        var config = CommonOptions.Config();
        var command = new Command("cleanup", $"""
            Apply retention now: delete events whose deliveries all succeeded and that are older than
            the bound, in small batches. Pending, in-flight and dead deliveries are never deleted.
            The worker runs the same on a schedule.

            The bounds come from the configuration file, found as 'run' finds it: --config, else
            {CommonOptions.ConfigVariable}, else ./{ConfigLoader.DefaultFileName}. A bound written
            'forever' deletes nothing of that kind. --older-than and --attempts-older-than override
            the file; with both given no file is needed. The file and the bounds are printed before
            anything is deleted.

            What another group keeps longer is kept: an event of a trigger that group subscribes
            to, an attempt record of its subscriptions, by the bounds its worker recorded when it
            started. The run's own group (--group, else the file's worker.group, else 'default')
            follows the bounds above. The groups that keep longer are printed.

            Examples:
              triggerevents cleanup
              triggerevents cleanup --config triggerevents.yaml
              triggerevents cleanup --older-than 7d --attempts-older-than 30d --group billing
            """)
        {
            olderThan, attemptsOlderThan, groupOption, config,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            var eventsFlag = ParseBound(parse.GetValue(olderThan), "--older-than");
            var attemptsFlag = ParseBound(parse.GetValue(attemptsOlderThan), "--attempts-older-than");
            var path = CommonOptions.ResolveConfig(parse.GetValue(config));

            // The file is read whenever it was named on purpose (a broken one is an error, not
            // skipped) and whenever a bound has to come from it.
            RetentionConfig? retention = null;
            // The group the run speaks for: the file's, or without one the default group, as a
            // file without worker.group is.
            var group = WorkerConfig.DefaultGroup;
            if (path.Explicit || eventsFlag is null || attemptsFlag is null)
            {
                var file = CommonOptions.LoadConfig(path);
                retention = file.Retention;
                group = file.Worker.Group;
            }

            group = parse.GetValue(groupOption) ?? group;

            var events = eventsFlag ?? new RetentionBound(retention!.DeliveredEvents, path);
            var attempts = attemptsFlag ?? new RetentionBound(retention!.Attempts, path);
            Console.WriteLine(retention is null
                ? "Retention from the command line:"
                : $"Retention from {path.Path} (named by {path.NamedBy}):");
            Console.WriteLine($"  delivered events: {events.Describe("--older-than")}");
            Console.WriteLine($"  attempt records:  {attempts.Describe("--attempts-older-than")}");
            if (events.Age is null && attempts.Age is null)
            {
                Console.WriteLine("Both are kept forever; nothing to delete.");
                return ExitCodes.Done;
            }

            await using var dataSource = CommandLine.OpenDatabase();
            await WorkerConnection.RequireReadCommittedAsync(dataSource, cancellationToken);
            foreach (var other in await GroupRetention.KeepingLongerAsync(dataSource, group, events.Age, attempts.Age, cancellationToken))
            {
                Console.WriteLine(
                    $"  kept longer where group {other.Group} subscribes: delivered events {Describe(other.DeliveredEvents)}, " +
                    $"attempt records {Describe(other.Attempts)} (recorded by its worker {other.RecordedAt:u})");
            }

            RetentionResult result;
            using (var progress = new ProgressLine("deleting events", null))
            {
                result = await Retention.RunOnceAsync(dataSource, events.Age, attempts.Age, group, progress, cancellationToken);
            }

            Console.WriteLine(result.Skipped
                ? "Another cleanup is running; nothing done."
                : $"Deleted {result.Events} delivered events, {result.Deliveries} deliveries and {result.Attempts} attempt records.");
            return ExitCodes.Done;
        }));
        return command;
    }

    private static string Describe(TimeSpan? bound) => bound is { } age ? Duration.Format(age) : "forever";

    private static RetentionBound? ParseBound(string? text, string option) =>
        text is null ? null
        : text == "forever" ? new RetentionBound(null, null)
        : Duration.TryParse(text, out var value) ? new RetentionBound(value, null)
        : throw new UsageException($"{option}: '{text}' is not a duration ({Duration.Examples}) or forever");

    /// <summary>One retention bound (null: forever) and the file it came from (null: the command line).</summary>
    private sealed record RetentionBound(TimeSpan? Age, ConfigPath? From)
    {
        public string Describe(string option) =>
            (Age is { } age ? $"older than {Duration.Format(age)} are deleted" : "kept forever")
            + (From is null ? $" ({option})" : "");
    }
}
