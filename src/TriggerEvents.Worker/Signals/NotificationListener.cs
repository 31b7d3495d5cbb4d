using Microsoft.Extensions.Logging;
using Npgsql;

namespace TriggerEvents.Worker.Signals;

/// <summary>
/// Holds one connection that LISTENs on capture's channel and sets the wake signal on every
/// notification. When the connection drops it reconnects with backoff, listens again and
/// wakes the claim loop at once, since notifications sent meanwhile are lost.
/// </summary>
internal sealed class NotificationListener(NpgsqlDataSource dataSource, WakeSignal wake, TimeProvider time, ILogger logger)
{
    public const string Channel = "trigger_events";

    /// <summary>True while LISTEN is established.</summary>
    public bool IsListening { get; private set; }

    public async Task RunAsync(CancellationToken stopping)
    {
        var failures = 0;
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(stopping);
                connection.Notification += (_, _) => wake.Set();
                await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(stopping);
                }

                IsListening = true;
                if (failures > 0)
                {
                    logger.LogInformation("Listening again after {Failures} failed attempts", failures);
                }

                failures = 0;
                wake.Set();
                while (!stopping.IsCancellationRequested)
                {
                    // A timeout lets a silently dead connection be noticed by the keepalive query.
                    if (!await connection.WaitAsync(TimeSpan.FromSeconds(30), stopping))
                    {
                        await using var ping = new NpgsqlCommand("SELECT 1", connection);
                        await ping.ExecuteScalarAsync(stopping);
                    }
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException or InvalidOperationException)
            {
                IsListening = false;
                failures++;
                var delay = ReconnectBackoff.Delay(failures);
                logger.LogWarning("LISTEN connection lost, reconnecting in {Delay}: {Error}", delay, e.Message);
                try
                {
                    await Task.Delay(delay, time, stopping);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

        IsListening = false;
    }
}
