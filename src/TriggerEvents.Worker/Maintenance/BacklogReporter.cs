using Npgsql;

namespace TriggerEvents.Worker.Maintenance;

/// <summary>
/// Decides which replica of a group exports the group's backlog gauges: the one holding the
/// group's session advisory lock on a connection it keeps for the purpose. When that replica
/// stops or loses its connection the lock goes with it, and another replica of the group takes
/// it at its next try. Each group has its own reporter: a team that scrapes only its own workers
/// sees its subscriptions' backlog whichever other team's workers run beside them.
/// </summary>
/// <remarks>
/// A session lock needs a server connection of its own: behind a pooler in transaction mode the
/// lock can stay with a server connection the pooler reuses. <see cref="HoldsAsync"/> therefore
/// checks each time that the lock belongs to the backend it is talking to.
/// </remarks>
internal sealed class BacklogReporter(NpgsqlDataSource dataSource, string group) : IAsyncDisposable
{
    /// <summary>The group's advisory lock key: "trigmetr" and the group's name, hashed (FNV-1a, 64 bits).</summary>
    public long AdvisoryLockKey { get; } = KeyOf(group);

    private NpgsqlConnection? held;

    /// <summary>True when this replica reports now: it held the lock already, or has just taken it.</summary>
    public async Task<bool> HoldsAsync(CancellationToken cancellationToken)
    {
        if (held is not null)
        {
            try
            {
                if (await ScalarAsync<bool>(held, $"""
                    SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                                   AND ((classid::bigint << 32) | objid::bigint) = {AdvisoryLockKey})
                    """, cancellationToken))
                {
                    return true;
                }
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
            {
                // The connection is gone, and the lock with it.
            }

            await ReleaseAsync();
        }

        var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        try
        {
            if (await ScalarAsync<bool>(connection, $"SELECT pg_try_advisory_lock({AdvisoryLockKey})", cancellationToken))
            {
                held = connection;
                return true;
            }
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        await connection.DisposeAsync();
        return false;
    }

    public async ValueTask DisposeAsync() => await ReleaseAsync();

    private async Task ReleaseAsync()
    {
        if (held is null)
        {
            return;
        }

        try
        {
            // Closing the connection would return it to the pool with the lock still held.
            await ScalarAsync<bool>(held, $"SELECT pg_advisory_unlock({AdvisoryLockKey})", CancellationToken.None);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            // Broken: the server released the lock when the session ended.
        }

        await held.DisposeAsync();
        held = null;
    }

    public static long KeyOf(string group)
    {
        var hash = 0xcbf2_9ce4_8422_2325UL;
        foreach (var b in System.Text.Encoding.UTF8.GetBytes("trigmetr:" + group))
        {
            hash = (hash ^ b) * 0x0000_0100_0000_01b3UL;
        }

        return unchecked((long)hash);
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
