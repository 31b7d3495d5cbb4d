using Npgsql;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// NOTIFY is a wake-up hint only: with it switched off the worker still delivers, by polling
/// (SPEC "Worker": polling alone is enough).
/// </summary>
public sealed class WakeUpTests
{
    // The default poll interval: deliveries wait for it, since nothing wakes the worker early.
    private static readonly FaultWorkerOptions Options = new() { PollInterval = "1s" };

    [Test]
    public async Task Trigger_attached_without_notify_is_delivered_by_polling()
    {
        await using var scenario = await FaultScenario.CreateAsync(", notify => false");
        Assert.That(await scenario.ScalarAsync<bool>($"SELECT notify FROM trigger_events.triggers WHERE name = '{FaultScenario.Trigger}'"), Is.False);
        await scenario.StartWorkerAsync(Options);

        await DeliverInRoundsAsync(scenario);
    }

    [Test]
    public async Task Idle_flag_held_false_is_delivered_by_polling()
    {
        await using var scenario = await FaultScenario.CreateAsync();

        // The worker's "I am idle" never sticks, so capture never notifies.
        await scenario.ExecuteAsync("""
            CREATE FUNCTION hold_busy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.idle := false; RETURN NEW; END $$;
            UPDATE trigger_events.worker_signal SET idle = false;
            CREATE TRIGGER hold_busy BEFORE UPDATE ON trigger_events.worker_signal FOR EACH ROW EXECUTE FUNCTION hold_busy();
            """);
        await scenario.StartWorkerAsync(Options);

        await DeliverInRoundsAsync(scenario);
        Assert.That(await scenario.ScalarAsync<bool>("SELECT idle FROM trigger_events.worker_signal"), Is.False, "the flag was held");
    }

    [Test]
    public async Task A_hint_left_busy_by_a_stopped_worker_is_set_again_by_the_next_one_that_goes_idle()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        // As a worker stopped while busy leaves them: the flag and its hint both "busy".
        await scenario.ExecuteAsync("UPDATE trigger_events.worker_signal SET idle = false; SELECT setval('trigger_events.worker_idle_hint', 0)");
        // Polling would take half a minute: only a wake-up delivers sooner.
        await scenario.StartWorkerAsync(new FaultWorkerOptions { PollInterval = "30s" });
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<long>("SELECT pg_sequence_last_value('trigger_events.worker_idle_hint')") == 1
                       && await s.ScalarAsync<bool>("SELECT idle FROM trigger_events.worker_signal"),
            TimeSpan.FromSeconds(30), "the worker idle, the flag and its hint set");

        var committed = DateTime.UtcNow;
        await scenario.InsertOrdersAsync(1, 5);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(20));

        Assert.That(DateTime.UtcNow - committed, Is.LessThan(TimeSpan.FromSeconds(10)), "delivered by a wake-up, not by the 30 s poll");
    }

    [Test]
    public async Task A_writer_whose_capture_took_the_wake_up_and_stays_open_holds_no_worker_back()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        await scenario.StartWorkerAsync(new FaultWorkerOptions { PollInterval = "200ms" });
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<bool>("SELECT idle FROM trigger_events.worker_signal"), TimeSpan.FromSeconds(30), "the worker idle");

        // A long job's transaction: its first capture finds the worker idle and takes the flag,
        // whose row stays locked until the job ends.
        await using var job = await scenario.DataSource.OpenConnectionAsync();
        await using var transaction = await job.BeginTransactionAsync();
        await using (var insert = new NpgsqlCommand($"INSERT INTO {FaultScenario.Table} (id, amount) VALUES (1000, 1)", job, transaction))
        {
            await insert.ExecuteNonQueryAsync();
        }

        Assert.That(
            await scenario.ScalarAsync<long>("SELECT count(*) FROM (SELECT FROM trigger_events.worker_signal FOR UPDATE SKIP LOCKED) free"),
            Is.Zero, "the job holds the flag's row");

        // Other writers go on meanwhile: each round arrives while the job is still open.
        for (var round = 0; round < 3; round++)
        {
            var committed = DateTime.UtcNow;
            await scenario.InsertOrdersAsync((round * 10) + 1, (round * 10) + 10);
            await scenario.WaitForDatabaseAsync(
                async s => await s.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered'") == (round + 1) * 10,
                TimeSpan.FromSeconds(60), $"round {round} delivered");
            Assert.That(DateTime.UtcNow - committed, Is.LessThan(TimeSpan.FromSeconds(10)), $"round {round} waited for the job's transaction");
        }

        await transaction.CommitAsync();
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(30));
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty);
    }

    /// <summary>
    /// Captures a few rounds of events, each once the previous one has arrived (so the worker is
    /// waiting, not busy), waits for each round to arrive, and checks that no NOTIFY was sent.
    /// </summary>
    private static async Task DeliverInRoundsAsync(FaultScenario scenario)
    {
        await using var listener = await scenario.DataSource.OpenConnectionAsync();
        var notifications = 0;
        listener.Notification += (_, _) => Interlocked.Increment(ref notifications);
        await using (var listen = new NpgsqlCommand("LISTEN trigger_events", listener))
        {
            await listen.ExecuteNonQueryAsync();
        }

        for (var round = 0; round < 3; round++)
        {
            await scenario.InsertOrdersAsync((round * 10) + 1, (round * 10) + 10);
            await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(30));
        }

        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));

        // A notification sent at any commit above reached this idle session at once; a query
        // reads it off the connection before its own result.
        await using (var ping = new NpgsqlCommand("SELECT 1", listener))
        {
            await ping.ExecuteScalarAsync();
        }

        Assert.That(notifications, Is.Zero, "capture sent a NOTIFY: this test would not show that polling alone delivers");
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty, "lost events");
        Assert.That(scenario.Receiver.Inner.DuplicateDeliveries, Is.Zero);
    }
}
