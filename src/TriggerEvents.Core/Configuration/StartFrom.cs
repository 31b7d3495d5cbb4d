namespace TriggerEvents.Core.Configuration;

/// <summary>
/// <c>start_from</c>: where a subscription begins reading the event log when it is first registered.
/// Only registration reads it; changing it later changes nothing (use <c>replay</c> for that).
/// </summary>
internal abstract record StartFrom
{
    private StartFrom()
    {
    }

    /// <summary><c>now</c>: only events captured after registration (the default).</summary>
    public sealed record Now : StartFrom;

    /// <summary><c>earliest</c>: every event still in the log, once, on registration.</summary>
    public sealed record Earliest : StartFrom;

    /// <summary>An ISO 8601 time: events captured at or after <paramref name="Time"/>, once, on registration.</summary>
    public sealed record At(DateTimeOffset Time) : StartFrom;
}
