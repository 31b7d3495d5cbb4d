using Npgsql;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The NOTIFY wake-up hint: at most one per transaction, only while a worker has said it is
/// idle, only when an event was captured, and never for a trigger attached with notify off.
/// </summary>
public sealed class WakeUpTests
{
    private const string Channel = "trigger_events";
    private TestDatabase database = null!;

    [OneTimeSetUp]
    public async Task CreateDatabase() => database = await TestDatabase.CreateAsync();

    [OneTimeTearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    // Fixture-wide state (worker_signal is one row): these tests run one at a time.
    [SetUp]
    public Task ResetSignal() =>
        database.ExecuteAsync("UPDATE trigger_events.worker_signal SET idle = true; SELECT setval('trigger_events.worker_idle_hint', 1)");

    private async Task<string> AttachedTableAsync(bool notify)
    {
        var table = $"w_{Guid.NewGuid():N}";
        var trigger = $"t_{Guid.NewGuid():N}"[..20];
        await database.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, s text)");
        await database.ScalarAsync<string>($"SELECT trigger_events.attach('{table}', '{trigger}', notify => {notify})");
        return table;
    }

    [TestCase(true, true, 1)]
    [TestCase(false, true, 0)]
    [TestCase(true, false, 0)]
    public async Task Notifies_once_per_transaction_only_when_idle_and_notify_on(bool idle, bool notify, int expected)
    {
        var table = await AttachedTableAsync(notify);
        await database.ExecuteAsync("UPDATE trigger_events.worker_signal SET idle = $1", idle);

        var received = await CountNotificationsAsync(async writer =>
        {
            await using var transaction = await writer.BeginTransactionAsync();
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')", writer, transaction).ExecuteNonQueryAsync();
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (3, 'c')", writer, transaction).ExecuteNonQueryAsync();
            await new NpgsqlCommand($"UPDATE {table} SET s = 'changed'", writer, transaction).ExecuteNonQueryAsync();
            await transaction.CommitAsync();
        });

        Assert.That(received, Is.EqualTo(expected));
    }

    [TestCase(System.Data.IsolationLevel.RepeatableRead)]
    [TestCase(System.Data.IsolationLevel.Serializable)]
    public async Task A_writer_whose_snapshot_saw_the_worker_idle_after_a_worker_changed_the_flag_commits_and_notifies(System.Data.IsolationLevel isolation)
    {
        var table = await AttachedTableAsync(notify: true);

        var received = await CountNotificationsAsync(async writer =>
        {
            await using var transaction = await writer.BeginTransactionAsync(isolation);
            // The writer's snapshot, taken by its first statement: the worker idle.
            await new NpgsqlCommand("SELECT idle FROM trigger_events.worker_signal", writer, transaction).ExecuteScalarAsync();
            // A worker takes work and goes idle again meanwhile.
            await database.ExecuteAsync("UPDATE trigger_events.worker_signal SET idle = false");
            await database.ExecuteAsync("UPDATE trigger_events.worker_signal SET idle = true");
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (1, 'a')", writer, transaction).ExecuteNonQueryAsync();
            await transaction.CommitAsync();
        });

        Assert.That(received, Is.EqualTo(1));
        Assert.That(await database.ScalarAsync<long>($"SELECT count(*) FROM {table}"), Is.EqualTo(1), "the write committed");
    }

    [Test]
    public async Task Only_the_first_capture_after_a_worker_went_idle_notifies_until_it_goes_idle_again()
    {
        var table = await AttachedTableAsync(notify: true);

        var first = await CountNotificationsAsync(async writer =>
        {
            for (var id = 1; id <= 5; id++)
            {
                await new NpgsqlCommand($"INSERT INTO {table} VALUES ({id}, 'a')", writer).ExecuteNonQueryAsync();
            }
        });
        var signalAfterwards = await database.ScalarAsync<string>(
            "SELECT idle::text || ' ' || pg_sequence_last_value('trigger_events.worker_idle_hint') FROM trigger_events.worker_signal");
        await new DeliveryStore(database.DataSource).ArmWakeUpAsync(CancellationToken.None);
        var again = await CountNotificationsAsync(writer => new NpgsqlCommand($"INSERT INTO {table} VALUES (6, 'b')", writer).ExecuteNonQueryAsync());

        Assert.That(first, Is.EqualTo(1), "five transactions, one wake-up");
        Assert.That(signalAfterwards, Is.EqualTo("false 0"), "the writer that sent it took the flag and its hint");
        Assert.That(again, Is.EqualTo(1), "the worker armed it again");
    }

    [Test]
    public async Task A_writer_that_takes_the_flag_and_rolls_back_leaves_it_armed_until_a_worker_restores_the_hint()
    {
        var table = await AttachedTableAsync(notify: true);
        await using (var rolledBack = await database.DataSource.OpenConnectionAsync())
        {
            await using var transaction = await rolledBack.BeginTransactionAsync();
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (1, 'a')", rolledBack, transaction).ExecuteNonQueryAsync();
            await transaction.RollbackAsync();
        }

        var flagBack = await database.ScalarAsync<bool>("SELECT idle FROM trigger_events.worker_signal");
        // The hint is not transactional: it stays 0, and the capture after skips the flag; the
        // worker's poll finds that event.
        var beforeTheWorker = await CountNotificationsAsync(writer => new NpgsqlCommand($"INSERT INTO {table} VALUES (2, 'b')", writer).ExecuteNonQueryAsync());
        // The worker's next empty round says it is idle again: the flag was armed, the hint is now.
        var flagWasArmed = !await new DeliveryStore(database.DataSource).ArmWakeUpAsync(CancellationToken.None);
        var afterTheWorker = await CountNotificationsAsync(writer => new NpgsqlCommand($"INSERT INTO {table} VALUES (3, 'c')", writer).ExecuteNonQueryAsync());

        Assert.That((flagBack, beforeTheWorker, flagWasArmed, afterTheWorker), Is.EqualTo((true, 0, true, 1)));
    }

    [Test]
    public async Task A_capture_reads_the_flag_only_while_the_hint_says_a_worker_may_be_idle()
    {
        var table = await AttachedTableAsync(notify: true);

        // The hint at 0 (every worker busy) is all capture reads: the flag, idle here, is left alone.
        await database.ExecuteAsync("SELECT setval('trigger_events.worker_idle_hint', 0)");
        var whileBusy = await CountNotificationsAsync(writer => new NpgsqlCommand($"INSERT INTO {table} VALUES (1, 'a')", writer).ExecuteNonQueryAsync());
        var flagWhileBusy = await database.ScalarAsync<bool>("SELECT idle FROM trigger_events.worker_signal");
        // The hint at 1 and the flag idle: the first capture takes the flag and sends the wake-up.
        await database.ExecuteAsync("SELECT setval('trigger_events.worker_idle_hint', 1)");
        var onceIdle = await CountNotificationsAsync(async writer =>
        {
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (2, 'b')", writer).ExecuteNonQueryAsync();
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (3, 'c')", writer).ExecuteNonQueryAsync();
        });

        Assert.That(whileBusy, Is.Zero, "the hint said every worker was busy");
        Assert.That(flagWhileBusy, Is.True, "capture did not read the flag, let alone take it");
        Assert.That(onceIdle, Is.EqualTo(1), "the hint let capture read the flag, and one writer took it");
        Assert.That(await database.ScalarAsync<long>($"SELECT count(*) FROM trigger_events.event_log WHERE table_name = '{table}'"), Is.EqualTo(3),
            "every change was captured either way");
    }

    [Test]
    public async Task A_statement_that_captures_nothing_does_not_notify()
    {
        var table = await AttachedTableAsync(notify: true);

        var received = await CountNotificationsAsync(async writer =>
        {
            // The statement-level triggers fire with empty transition tables.
            await new NpgsqlCommand($"INSERT INTO {table} SELECT 1, 'a' WHERE false", writer).ExecuteNonQueryAsync();
            await new NpgsqlCommand($"DELETE FROM {table}", writer).ExecuteNonQueryAsync();
        });

        Assert.That(received, Is.Zero);
    }

    /// <summary>
    /// Runs <paramref name="write"/> and counts the wake-ups it caused. After the write commits,
    /// the writer sends a sentinel on another channel; notifications arrive in commit order,
    /// so once the sentinel is in, every wake-up of the write has arrived too (no timing guess).
    /// </summary>
    private async Task<int> CountNotificationsAsync(Func<NpgsqlConnection, Task> write)
    {
        var sentinel = $"sentinel_{Guid.NewGuid():N}";
        await using var listener = await database.DataSource.OpenConnectionAsync();
        var count = 0;
        var done = false;
        listener.Notification += (_, e) =>
        {
            if (e.Channel == Channel)
            {
                count++;
            }
            else if (e.Channel == sentinel)
            {
                done = true;
            }
        };
        await new NpgsqlCommand($"LISTEN {Channel}; LISTEN {sentinel}", listener).ExecuteNonQueryAsync();

        await using (var writer = await database.DataSource.OpenConnectionAsync())
        {
            await write(writer);
            await new NpgsqlCommand($"NOTIFY {sentinel}", writer).ExecuteNonQueryAsync();
        }

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!done)
        {
            await listener.WaitAsync(deadline.Token);
        }

        return count;
    }
}
