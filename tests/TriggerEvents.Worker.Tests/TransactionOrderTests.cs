using Npgsql;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// Other sessions' transactions around capture: a long-held old snapshot, and event ids that
/// commit out of order. Delivery must not depend on ids committing in order or on the oldest
/// snapshot moving on.
/// </summary>
public sealed class TransactionOrderTests
{
    [Test]
    public async Task Old_snapshot_held_open_while_events_flow_loses_nothing()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        await using var old = await scenario.DataSource.OpenConnectionAsync();
        await using var snapshot = await old.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead);
        await using (var first = new NpgsqlCommand("SELECT 1", old, snapshot))
        {
            await first.ExecuteScalarAsync();
        }

        await scenario.StartWorkerAsync(new FaultWorkerOptions());
        for (var round = 0; round < 5; round++)
        {
            // Inserts, and updates that leave dead row versions the old snapshot keeps around.
            await scenario.InsertOrdersAsync((round * 100) + 1, (round * 100) + 100);
            await scenario.ExecuteAsync($"UPDATE orders SET status = 'paid' WHERE id BETWEEN {(round * 100) + 1} AND {(round * 100) + 50}");
            await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(60));
        }

        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));
        Assert.That(await scenario.CapturedEventIdsAsync(), Has.Count.EqualTo(750));
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty, "lost events");
        Assert.That(scenario.Receiver.Inner.DuplicateDeliveries, Is.Zero);

        // The old snapshot was held the whole time: it still sees none of the events.
        await using (var check = new NpgsqlCommand("SELECT count(*) FROM trigger_events.event_log", old, snapshot))
        {
            Assert.That(await check.ExecuteScalarAsync(), Is.Zero);
        }

        await snapshot.CommitAsync();
    }

    [Test]
    public async Task Event_with_a_lower_id_committed_after_a_higher_one_is_delivered_too()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        await scenario.StartWorkerAsync(new FaultWorkerOptions());

        await using var a = await scenario.DataSource.OpenConnectionAsync();
        await using var transactionA = await a.BeginTransactionAsync();
        long lowerId;
        await using (var insert = new NpgsqlCommand(
            "INSERT INTO orders (id) VALUES (1); SELECT currval(pg_get_serial_sequence('trigger_events.event_log', 'id'))", a, transactionA))
        {
            lowerId = (long)(await insert.ExecuteScalarAsync())!;
        }

        await scenario.InsertOrdersAsync(2, 2);
        var higherId = (await scenario.CapturedEventIdsAsync()).Single();
        Assert.That(lowerId, Is.LessThan(higherId), "the open transaction's event has the lower id");
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Contains(higherId), TimeSpan.FromSeconds(30), "the higher id delivered");

        await transactionA.CommitAsync();
        await scenario.Receiver.WaitUntilAsync(r => r.DeliveredEventIds().Contains(lowerId), TimeSpan.FromSeconds(30), "the lower id delivered");

        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty, "lost events");
        Assert.That(scenario.Receiver.Inner.DuplicateDeliveries, Is.Zero);
    }
}
