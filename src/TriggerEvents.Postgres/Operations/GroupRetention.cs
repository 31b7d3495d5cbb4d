using Npgsql;
using NpgsqlTypes;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Postgres.Operations;

/// <summary>One group's retention bounds as its worker recorded them (null: forever).</summary>
internal sealed record GroupRetentionBounds(string Group, TimeSpan? DeliveredEvents, TimeSpan? Attempts, DateTimeOffset RecordedAt);

/// <summary>
/// Each group's retention bounds, recorded in <c>trigger_events.group_retention</c> (migration
/// 000022) by its worker when it starts, so that one team's retention never deletes what another
/// team's file keeps: <see cref="Retention"/> keeps an event while any other group with a
/// subscription on its trigger keeps it, and an attempt record while its subscription's group does.
/// The last worker of a group to start sets the group's bounds; during a rolling deploy the
/// replicas still running the older file keep at least their own bounds in their own runs.
/// </summary>
internal static class GroupRetention
{
    private const string RecordSql = """
        INSERT INTO trigger_events.group_retention (group_name, delivered_events, attempts)
        VALUES ($1, $2, $3)
        ON CONFLICT (group_name) DO UPDATE
        SET delivered_events = EXCLUDED.delivered_events, attempts = EXCLUDED.attempts, recorded_at = now()
        """;

    public static async Task RecordAsync(NpgsqlDataSource dataSource, string group, RetentionConfig retention, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(RecordSql);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = group });
        command.Parameters.Add(new NpgsqlParameter<TimeSpan?> { TypedValue = retention.DeliveredEvents, NpgsqlDbType = NpgsqlDbType.Interval });
        command.Parameters.Add(new NpgsqlParameter<TimeSpan?> { TypedValue = retention.Attempts, NpgsqlDbType = NpgsqlDbType.Interval });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The groups other than <paramref name="group"/> that keep either kind longer than the given bounds (null: forever).</summary>
    public static async Task<IReadOnlyList<GroupRetentionBounds>> KeepingLongerAsync(
        NpgsqlDataSource dataSource, string group, TimeSpan? deliveredEvents, TimeSpan? attempts, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            "SELECT group_name, delivered_events, attempts, recorded_at FROM trigger_events.group_retention WHERE group_name <> $1 ORDER BY group_name");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = group });
        var longer = new List<GroupRetentionBounds>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var bounds = new GroupRetentionBounds(
                reader.GetString(0),
                reader.IsDBNull(1) ? null : reader.GetFieldValue<TimeSpan>(1),
                reader.IsDBNull(2) ? null : reader.GetFieldValue<TimeSpan>(2),
                reader.GetFieldValue<DateTimeOffset>(3));
            if (Longer(bounds.DeliveredEvents, deliveredEvents) || Longer(bounds.Attempts, attempts))
            {
                longer.Add(bounds);
            }
        }

        return longer;
    }

    /// <summary>Whether a bound keeps longer than another, null being forever.</summary>
    private static bool Longer(TimeSpan? bound, TimeSpan? than) =>
        than is not null && (bound is null || bound > than);
}
