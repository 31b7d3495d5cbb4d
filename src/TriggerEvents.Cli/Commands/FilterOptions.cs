using System.CommandLine;
using System.Globalization;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli.Commands;

/// <summary>The --subscription, --id, --since, --until and --before filters of dead and replay.</summary>
internal sealed class FilterOptions
{
    public Option<string?> Subscription { get; } = new("--subscription", "-s") { Description = "Only this subscription." };

    public Option<long?> Id { get; } = new("--id") { Description = "Only this event id." };

    public Option<string?> Since { get; } = new("--since") { Description = "Events captured at or after this time: an ISO time (2026-11-26T17:00:00Z) or an age (2h, 7d)." };

    public Option<string?> Until { get; } = new("--until") { Description = "Events captured before this time: an ISO time or an age." };

    public Option<string?> Before { get; } = new("--before") { Description = "The same as --until." };

    public void AddTo(Command command)
    {
        command.Options.Add(Subscription);
        command.Options.Add(Id);
        command.Options.Add(Since);
        command.Options.Add(Until);
        command.Options.Add(Before);
    }

    public DeliveryFilter Read(ParseResult parse)
    {
        var until = parse.GetValue(Until);
        var before = parse.GetValue(Before);
        if (until is not null && before is not null)
        {
            throw new UsageException("give --until or --before, not both");
        }

        return new DeliveryFilter(
            parse.GetValue(Subscription),
            parse.GetValue(Id),
            ParseTime(parse.GetValue(Since), "--since"),
            ParseTime(until ?? before, until is null ? "--before" : "--until"));
    }

    /// <summary>An ISO 8601 time with a zone, a date (midnight UTC), or an age back from now (<see cref="PointInTime"/>).</summary>
    public static DateTimeOffset? ParseTime(string? text, string option) =>
        string.IsNullOrWhiteSpace(text) ? null
        : PointInTime.TryParse(text, DateTimeOffset.UtcNow, out var time) ? time
        : throw new UsageException($"{option}: '{text}' is neither {PointInTime.Expected.Replace(" or ", " nor ", StringComparison.Ordinal)}");
}
