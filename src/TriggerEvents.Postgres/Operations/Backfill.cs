using Npgsql;
using NpgsqlTypes;

namespace TriggerEvents.Postgres.Operations;

/// <summary>
/// A backfill as <c>trigger_events.backfill_start</c> found or made it: a new one, the running one
/// with the same arguments (<see cref="Resumed"/>), or the last one that finished
/// (<see cref="AlreadyDone"/>).
/// </summary>
/// <param name="Id">The row of <c>trigger_events.backfills</c>.</param>
/// <param name="State">running, or done.</param>
/// <param name="Resumed">True when an interrupted backfill with the same arguments continues.</param>
/// <param name="RowsRead">Rows read by earlier runs.</param>
/// <param name="Events">READ events written by earlier runs.</param>
/// <param name="EstimatedRows">The planner's row count of the table, or null when it was never analyzed.</param>
/// <param name="Subscriptions">How many subscriptions receive the events.</param>
/// <param name="FinishedAt">When a finished backfill finished.</param>
internal sealed record BackfillStart(
    long Id, string State, bool Resumed, long RowsRead, long Events, long? EstimatedRows, int Subscriptions, DateTimeOffset? FinishedAt)
{
    /// <summary>The same backfill already ran to its end: there is nothing to do unless it is restarted.</summary>
    public bool AlreadyDone => State == "done";
}

/// <summary>What a run of a backfill did, and where the backfill stands in total.</summary>
internal sealed record BackfillResult(long RowsRead, long Events, long TotalRowsRead, long TotalEvents);

/// <summary>
/// <c>backfill</c>: one READ event per existing row of an attached table, written by
/// <c>trigger_events.backfill_chunk</c> one chunk per transaction, in primary-key order (migration
/// 000006). A chunk writes its events and the backfill's new place together, so an interrupted
/// run loses at most the chunk it was in, and the next run with the same arguments continues
/// after the last chunk that committed.
/// </summary>
internal static class Backfill
{
    /// <summary>Rows per chunk (and per transaction) unless told otherwise.</summary>
    public const int DefaultChunkRows = 1000;

    /// <summary>The largest chunk accepted: a chunk's rows are held in memory by the server while it writes their events.</summary>
    public const int MaxChunkRows = 100_000;

    /// <summary>
    /// Checks the arguments and returns the backfill to run. A bad argument (no primary key, a
    /// filter that is not one boolean expression, a subscription that does not receive READ) is
    /// a <see cref="PostgresException"/> with <see cref="PostgresErrorCodes.RaiseException"/>
    /// whose message says which, and nothing is recorded.
    /// </summary>
    public static async Task<BackfillStart> StartAsync(
        NpgsqlDataSource dataSource, string trigger, string? filter, string? subscription, bool restart, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT backfill_id, state, resumed, rows_read, events, estimated_rows, subscriptions, finished_at
            FROM trigger_events.backfill_start($1, $2, $3, $4)
            """);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = trigger });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)filter ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)subscription ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter<bool> { TypedValue = restart });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new BackfillStart(
            reader.GetInt64(0),
            reader.GetString(1),
            reader.GetBoolean(2),
            reader.GetInt64(3),
            reader.GetInt64(4),
            reader.IsDBNull(5) ? null : reader.GetInt64(5),
            reader.GetInt32(6),
            reader.IsDBNull(7) ? null : reader.GetFieldValue<DateTimeOffset>(7));
    }

    /// <summary>
    /// Runs chunks until the backfill is done. With <paramref name="rowsPerSecond"/>, chunks are
    /// at most a second's worth of rows and are paced so that no more rows than that are read
    /// per second on average. <paramref name="progress"/> hears the backfill's total rows read
    /// after each chunk.
    /// </summary>
    public static async Task<BackfillResult> RunAsync(
        NpgsqlDataSource dataSource, BackfillStart backfill, int chunkRows, int? rowsPerSecond, TimeProvider time,
        IProgress<long>? progress, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkRows, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(chunkRows, MaxChunkRows);
        if (rowsPerSecond is { } rate)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(rate, 1, nameof(rowsPerSecond));
            chunkRows = Math.Min(chunkRows, rate);
        }

        long rows = 0, events = 0;
        var started = time.GetTimestamp();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT rows_read, events, done FROM trigger_events.backfill_chunk($1, $2)", connection);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = backfill.Id });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = chunkRows });
        if (backfill.RowsRead > 0)
        {
            progress?.Report(backfill.RowsRead);
        }

        while (true)
        {
            bool done;
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            {
                await reader.ReadAsync(cancellationToken);
                rows += reader.GetInt64(0);
                events += reader.GetInt64(1);
                done = reader.GetBoolean(2);
            }

            progress?.Report(backfill.RowsRead + rows);
            if (done)
            {
                return new BackfillResult(rows, events, backfill.RowsRead + rows, backfill.Events + events);
            }

            if (rowsPerSecond is { } perSecond && PaceDelay(rows, perSecond, time.GetElapsedTime(started)) is { } wait && wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, time, cancellationToken);
            }
        }
    }

    /// <summary>How long to wait after <paramref name="rows"/> rows read in <paramref name="elapsed"/> so as not to exceed <paramref name="rowsPerSecond"/>.</summary>
    public static TimeSpan PaceDelay(long rows, int rowsPerSecond, TimeSpan elapsed)
    {
        var due = TimeSpan.FromSeconds((double)rows / rowsPerSecond);
        return due > elapsed ? due - elapsed : TimeSpan.Zero;
    }
}
