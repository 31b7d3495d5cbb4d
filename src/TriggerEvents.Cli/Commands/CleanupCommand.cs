using System.CommandLine;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli.Commands;

internal static class CleanupCommand
{
    public static Command Create()
    {
        var olderThan = new Option<string?>("--older-than") { Description = "Delete delivered events older than this (default: retention.delivered_events of --config, else 7d)." };
        var attemptsOlderThan = new Option<string?>("--attempts-older-than") { Description = "Delete attempt records older than this (default: retention.attempts, else 7d)." };
        var config = CommonOptions.Config();
        var command = new Command("cleanup", """
            Apply retention now: delete events whose deliveries all succeeded and that are older than
            the bound, in small batches. Pending, in-flight and dead deliveries are never deleted.
            The worker runs the same on a schedule.

            Examples:
              triggerevents cleanup --older-than 7d
              triggerevents cleanup --config triggerevents.yaml
            """)
        {
            olderThan, attemptsOlderThan, config,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            var retention = parse.GetValue(config) is { } path ? CommonOptions.LoadConfig(path).Retention : new RetentionConfig();
            var events = Bound(parse.GetValue(olderThan), "--older-than") ?? retention.DeliveredEvents;
            var attempts = Bound(parse.GetValue(attemptsOlderThan), "--attempts-older-than") ?? retention.Attempts;
            await using var dataSource = CommandLine.OpenDatabase();
            RetentionResult result;
            using (var progress = new ProgressLine("deleting events", null))
            {
                result = await Retention.RunOnceAsync(dataSource, events, attempts, progress, cancellationToken);
            }

            Console.WriteLine(result.Skipped
                ? "Another cleanup is running; nothing done."
                : $"Deleted {result.Events} delivered events, {result.Deliveries} deliveries and {result.Attempts} attempt records.");
            return ExitCodes.Done;
        }));
        return command;
    }

    private static TimeSpan? Bound(string? text, string option) =>
        text is null ? null
        : Duration.TryParse(text, out var value) ? value
        : throw new UsageException($"{option}: '{text}' is not a duration (500ms, 10s, 5m, 1h, 7d)");
}
