using System.Collections.Immutable;

namespace TriggerEvents.Core.Configuration;

/// <summary>The operations an event can record, spelled as they appear in the <c>op</c> field of a webhook.</summary>
internal static class EventOperations
{
    /// <summary>A row was inserted.</summary>
    public const string Insert = "INSERT";

    /// <summary>A row was updated.</summary>
    public const string Update = "UPDATE";

    /// <summary>A row was deleted.</summary>
    public const string Delete = "DELETE";

    /// <summary>An event captured by <c>trigger_events.invoke</c>.</summary>
    public const string Manual = "MANUAL";

    /// <summary>A row as it is, written by <c>triggerevents backfill</c>.</summary>
    public const string Read = "READ";

    /// <summary>All five; a sorted set so that every listing of it reads the same.</summary>
    public static ImmutableSortedSet<string> All { get; } =
        ImmutableSortedSet.Create(StringComparer.Ordinal, Insert, Update, Delete, Manual, Read);

    /// <summary>The canonical spelling of <paramref name="text"/> (any case), or null if it is no operation.</summary>
    public static string? Normalize(string text) =>
        All.FirstOrDefault(op => string.Equals(op, text, StringComparison.OrdinalIgnoreCase));
}
