using Npgsql;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The fan-out (migration 000003): committed events become deliveries from each subscription's
/// place in the log, whatever order transactions capture and commit in, exactly once.
/// </summary>
/// <remarks>
/// Deliveries have a primary key, so an event given twice would be hidden by its conflict.
/// <see cref="FanOutAndForgetAsync"/> therefore deletes the deliveries each fan-out made (as if
/// delivered and cleaned up) and counts them: an event given twice is then counted twice.
/// </remarks>
public sealed class FanOutTests
{
    private readonly List<long> given = [];
    private TestDatabase database = null!;

    [SetUp]
    public async Task CreateDatabase()
    {
        given.Clear();
        database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id bigint PRIMARY KEY, note text)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('hook', 'orders_changed')");
    }

    [TearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    /// <summary>Fans out, records which events it gave, and deletes their deliveries.</summary>
    private async Task<long[]> FanOutAndForgetAsync(int maxEvents = 10_000)
    {
        await database.ScalarAsync<long>("SELECT trigger_events.fan_out(NULL, $1)", maxEvents);
        var ids = await database.ScalarAsync<long[]>(
            "WITH gone AS (DELETE FROM trigger_events.deliveries RETURNING event_id) SELECT coalesce(array_agg(event_id ORDER BY event_id), '{}') FROM gone");
        given.AddRange(ids);
        return ids;
    }

    /// <summary>Fans out and forgets until everything committed so far is given (see <see cref="TestDatabase.FanOutAsync"/>).</summary>
    private async Task FanOutAllAndForgetAsync()
    {
        while (true)
        {
            var batchInProgress = await BatchInProgressAsync();
            if ((await FanOutAndForgetAsync()).Length == 0 && !batchInProgress && !await BatchInProgressAsync())
            {
                return;
            }
        }
    }

    private Task<bool> BatchInProgressAsync() =>
        database.ScalarAsync<bool>("SELECT EXISTS (SELECT FROM trigger_events.subscription_positions WHERE batch_end IS NOT NULL)");

    private async Task<NpgsqlTransaction> OpenWriterAsync(long id, NpgsqlConnection connection)
    {
        var transaction = await connection.BeginTransactionAsync();
        await using var insert = new NpgsqlCommand($"INSERT INTO orders VALUES ({id})", connection, transaction);
        await insert.ExecuteNonQueryAsync();
        return transaction;
    }

    private Task<long> EventOfAsync(long orderId) =>
        database.ScalarAsync<long>("SELECT id FROM trigger_events.event_log WHERE (new_data->>'id')::bigint = $1", orderId);

    [Test]
    public async Task An_event_that_captured_earlier_and_commits_later_is_given_when_it_commits_and_only_then()
    {
        await using var early = await database.DataSource.OpenConnectionAsync();
        var transaction = await OpenWriterAsync(1, early);
        await database.ExecuteAsync("INSERT INTO orders VALUES (2)");

        var first = await FanOutAndForgetAsync();
        await transaction.CommitAsync();
        var second = await FanOutAndForgetAsync();
        var third = await FanOutAndForgetAsync();

        Assert.That(first, Is.EqualTo(new[] { await EventOfAsync(2) }), "only what had committed");
        Assert.That(second, Is.EqualTo(new[] { await EventOfAsync(1) }), "the earlier capture, once it committed");
        Assert.That(third, Is.Empty);
    }

    [Test]
    public async Task A_transaction_open_across_many_fan_outs_is_neither_skipped_nor_given_twice()
    {
        await using var longRunning = await database.DataSource.OpenConnectionAsync();
        var transaction = await OpenWriterAsync(0, longRunning);
        for (var id = 1; id <= 30; id++)
        {
            await database.ExecuteAsync($"INSERT INTO orders VALUES ({id})");
            await FanOutAndForgetAsync(maxEvents: 1 + (id % 3));
        }

        await using (var more = new NpgsqlCommand("INSERT INTO orders VALUES (100)", longRunning, transaction))
        {
            await more.ExecuteNonQueryAsync();
        }

        await transaction.CommitAsync();
        await FanOutAllAndForgetAsync();

        var captured = await database.ScalarAsync<long[]>("SELECT array_agg(id ORDER BY id) FROM trigger_events.event_log");
        Assert.That(given.Order(), Is.EqualTo(captured));
    }

    [Test]
    public async Task Rolled_back_transactions_and_savepoints_give_nothing()
    {
        await using var connection = await database.DataSource.OpenConnectionAsync();
        var rolledBack = await OpenWriterAsync(1, connection);
        await rolledBack.RollbackAsync();
        await using (var batch = new NpgsqlCommand(
            "BEGIN; INSERT INTO orders VALUES (2); SAVEPOINT s; INSERT INTO orders VALUES (3); ROLLBACK TO s; COMMIT", connection))
        {
            await batch.ExecuteNonQueryAsync();
        }

        Assert.That(await FanOutAndForgetAsync(), Is.EqualTo(new[] { await EventOfAsync(2) }));
    }

    [Test]
    public async Task A_capped_fan_out_continues_where_it_stopped_even_inside_a_large_transaction()
    {
        await using var longRunning = await database.DataSource.OpenConnectionAsync();
        var open = await OpenWriterAsync(0, longRunning);
        for (var id = 1; id <= 5; id++)
        {
            await database.ExecuteAsync($"INSERT INTO orders VALUES ({id})");
        }

        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1000, 1049) g");
        for (var id = 6; id <= 10; id++)
        {
            await database.ExecuteAsync($"INSERT INTO orders VALUES ({id})");
        }

        var sizes = new List<int>();
        while ((await FanOutAndForgetAsync(maxEvents: 4)) is { Length: > 0 } ids)
        {
            sizes.Add(ids.Length);
        }

        // Committed meanwhile: after the batch in progress, in the next one.
        await database.ExecuteAsync("INSERT INTO orders VALUES (11)");
        await open.CommitAsync();
        sizes.Add((await FanOutAndForgetAsync(maxEvents: 4)).Length);

        Assert.That(sizes, Is.EqualTo(Enumerable.Repeat(4, 15).Append(2)), "four events a call, the 50-row statement across calls, the long transaction with the next batch");
        Assert.That(given, Is.Unique.And.Count.EqualTo(62));
    }

    [Test]
    public async Task A_fan_out_skips_a_place_another_holds_instead_of_waiting_and_gives_nothing_twice()
    {
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await using var holder = await database.DataSource.OpenConnectionAsync();
        await using var holding = await holder.BeginTransactionAsync();
        await using (var fanOut = new NpgsqlCommand("SELECT trigger_events.fan_out()", holder, holding))
        {
            Assert.That(await fanOut.ExecuteScalarAsync(), Is.EqualTo(1L));
        }

        await database.ExecuteAsync("INSERT INTO orders VALUES (2)");
        var whileHeld = await database.ScalarAsync<long>("SELECT trigger_events.fan_out()");
        await holding.CommitAsync();
        var afterwards = await FanOutAndForgetAsync();

        Assert.That(whileHeld, Is.Zero, "skipped, not waited for");
        Assert.That(afterwards, Is.EqualTo(new[] { await EventOfAsync(1), await EventOfAsync(2) }));
    }

    [Test]
    public async Task Subscriptions_at_one_place_share_a_read_and_each_gets_its_operations()
    {
        await database.ExecuteAsync(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, operations) VALUES ('inserts', 'orders_changed', '{INSERT}'), ('deletes', 'orders_changed', '{DELETE}')");
        await database.ExecuteAsync("INSERT INTO orders VALUES (1), (2)");
        await database.ExecuteAsync("DELETE FROM orders WHERE id = 1");
        await database.ExecuteAsync("INSERT INTO orders VALUES (3)");

        await database.FanOutAsync();

        var counts = await database.ScalarAsync<string>(
            "SELECT string_agg(s.name || '=' || (SELECT count(*) FROM trigger_events.deliveries d WHERE d.subscription_id = s.id), ',' ORDER BY s.name) FROM trigger_events.subscriptions s");
        Assert.That(counts, Is.EqualTo("deletes=1,hook=4,inserts=3"));
    }


    [Test]
    public async Task An_event_with_an_operation_no_subscription_receives_is_passed_over_and_the_log_goes_on()
    {
        // event_log.op is unchecked (000018): only the schema's own functions write the log, and
        // its owner writing another op by hand must not stall anything behind it.
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await database.ExecuteAsync(
            "INSERT INTO trigger_events.event_log (trigger_name, schema_name, table_name, op, new_data) VALUES ('orders_changed', 'public', 'orders', 'TRUNCATE', '{}')");
        await database.ExecuteAsync("INSERT INTO orders VALUES (2)");

        await FanOutAllAndForgetAsync();

        var expected = new[] { await EventOfAsync(1), await EventOfAsync(2) };
        Assert.That(given, Is.EqualTo(expected));
        Assert.That(await database.ScalarAsync<bool>(
            "SELECT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'trigger_events.event_log'::regclass AND contype = 'c')"), Is.False);
    }
    [Test]
    public async Task Concurrent_writers_and_fan_outs_give_every_committed_event_exactly_once()
    {
        // Four writers commit after random delays, some rolling back; three fan-out loops run
        // beside them, each forgetting what it made; one transaction stays open throughout.
        await using var longRunning = await database.DataSource.OpenConnectionAsync();
        var open = await OpenWriterAsync(0, longRunning);
        var random = new Random(20261129);
        var seeds = Enumerable.Range(0, 4).Select(_ => random.Next()).ToArray();
        using var writing = new CancellationTokenSource();
        var writers = seeds.Select((seed, writer) => Task.Run(async () =>
        {
            var rng = new Random(seed);
            await using var connection = await database.DataSource.OpenConnectionAsync();
            for (var i = 1; i <= 60; i++)
            {
                var transaction = await OpenWriterAsync((writer + 1) * 1000 + i, connection);
                await Task.Delay(rng.Next(0, 15));
                if (rng.Next(10) == 0)
                {
                    await transaction.RollbackAsync();
                }
                else
                {
                    await transaction.CommitAsync();
                }
            }
        })).ToArray();
        var fanOuts = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
        {
            var made = new List<long>();
            await using var connection = await database.DataSource.OpenConnectionAsync();
            while (!writing.IsCancellationRequested)
            {
                await using var command = new NpgsqlCommand(
                    "WITH f AS MATERIALIZED (SELECT trigger_events.fan_out(NULL, 7)) SELECT 1 FROM f", connection);
                await using var transaction = await connection.BeginTransactionAsync();
                command.Transaction = transaction;
                await command.ExecuteNonQueryAsync();
                await using var forget = new NpgsqlCommand(
                    "WITH gone AS (DELETE FROM trigger_events.deliveries RETURNING event_id) SELECT coalesce(array_agg(event_id), '{}') FROM gone", connection, transaction);
                made.AddRange((long[])(await forget.ExecuteScalarAsync())!);
                await transaction.CommitAsync();
            }

            return made;
        })).ToArray();

        await Task.WhenAll(writers);
        await open.CommitAsync();
        await writing.CancelAsync();
        foreach (var loop in fanOuts)
        {
            given.AddRange(await loop);
        }

        await FanOutAllAndForgetAsync();
        var captured = await database.ScalarAsync<long[]>("SELECT array_agg(id ORDER BY id) FROM trigger_events.event_log");
        var lost = captured.Except(given).Count();
        var duplicated = given.Count - given.Distinct().Count();
        TestContext.Out.WriteLine($"captured {captured.Length}, lost {lost}, duplicated {duplicated}");
        Assert.That((lost, duplicated), Is.EqualTo((0, 0)));
        Assert.That(captured, Has.Length.GreaterThan(150), "most of the 241 transactions committed");
    }
}
