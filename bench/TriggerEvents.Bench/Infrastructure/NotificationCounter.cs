using Npgsql;

namespace TriggerEvents.Bench.Infrastructure;

/// <summary>
/// A LISTEN connection on the wake-up channel that consumes and counts notifications while a
/// benchmark writes, as an idle worker would: with a listener, every notifying commit also
/// signals it and the queue is really read and advanced.
/// </summary>
internal sealed class NotificationCounter : IAsyncDisposable
{
    public const string Channel = "trigger_events";

    private readonly NpgsqlConnection connection;
    private readonly string sentinel = $"bench_sentinel_{Guid.NewGuid():N}";
    private long count;
    private bool sentinelSeen;
    private Task? reading;
    private CancellationTokenSource? stopReading;

    private NotificationCounter(NpgsqlConnection connection)
    {
        this.connection = connection;
        connection.Notification += (_, e) =>
        {
            if (e.Channel == Channel)
            {
                count++;
            }
            else if (e.Channel == sentinel)
            {
                sentinelSeen = true;
            }
        };
    }

    public static async Task<NotificationCounter> StartAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var counter = new NotificationCounter(connection);
        await using (var listen = new NpgsqlCommand($"LISTEN {Channel}; LISTEN {counter.sentinel}", connection))
        {
            await listen.ExecuteNonQueryAsync(cancellationToken);
        }

        counter.stopReading = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var token = counter.stopReading.Token;
        counter.reading = Task.Run(() => counter.ReadUntilSentinelAsync(token), token);
        return counter;
    }

    /// <summary>
    /// Sends a sentinel from another connection and waits for it. Notifications arrive in
    /// commit order, so once the sentinel is in, every wake-up committed before it has been
    /// counted: no timing guess.
    /// </summary>
    public async Task<long> StopAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using (var notify = dataSource.CreateCommand($"NOTIFY {sentinel}"))
        {
            await notify.ExecuteNonQueryAsync(cancellationToken);
        }

        await reading!.WaitAsync(TimeSpan.FromMinutes(1), cancellationToken);
        return count;
    }

    /// <summary>
    /// Ends the reading loop first when <see cref="StopAsync"/> was not reached (a run that
    /// failed): disposing a connection in the middle of its wait raised an error of its own,
    /// which hid the run's.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (stopReading is not null)
        {
            await stopReading.CancelAsync();
            try
            {
                await reading!;
            }
            catch (OperationCanceledException)
            {
                // Stopped, as asked.
            }

            stopReading.Dispose();
        }

        await connection.DisposeAsync();
    }

    // The Notification handler runs on this loop's thread, inside WaitAsync, so the fields need
    // no synchronisation; StopAsync reads them only after the loop has finished.
    private async Task ReadUntilSentinelAsync(CancellationToken cancellationToken)
    {
        while (!sentinelSeen)
        {
            await connection.WaitAsync(cancellationToken);
        }
    }
}
