namespace TriggerEvents.Core.Configuration;

/// <summary>
/// <c>ordering: key</c> with its <c>ordering_key</c>: for one key, events are delivered in commit
/// order, one at a time across all replicas (SPEC "Ordering").
/// </summary>
/// <param name="KeyColumns">
/// <c>ordering_key</c>: the columns whose values make an event's key, taken from the new row
/// (INSERT, UPDATE, READ) or the old row (DELETE). Empty: the table's primary key, looked up in
/// the database (so it follows the table as it is).
/// </param>
internal sealed record OrderingConfig(IReadOnlyList<string> KeyColumns)
{
    /// <summary>Ordered by the table's primary key (<c>ordering: key</c> without <c>ordering_key</c>).</summary>
    public static OrderingConfig PrimaryKey { get; } = new([]);

    /// <summary>Where <c>ordering_key</c> (or, without it, <c>ordering</c>) is written, for errors found against the database.</summary>
    public ConfigLocation? Location { get; init; }
}
