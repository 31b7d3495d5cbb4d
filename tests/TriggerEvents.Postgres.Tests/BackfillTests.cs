using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// Backfills (migration 000006): one READ event per existing row, in primary-key chunks of one
/// transaction each, resumable without giving a row twice, for the trigger's READ subscriptions
/// or for one.
/// </summary>
public sealed class BackfillTests
{
    private TestDatabase database = null!;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL, note text)");
        await database.ExecuteAsync("INSERT INTO orders SELECT g, CASE WHEN g % 4 = 0 THEN 'paid' ELSE 'new' END, 'note ' || g FROM generate_series(1, 10000) g");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('hook', 'orders_changed')");
    }

    [TearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private Task<BackfillStart> StartAsync(string trigger = "orders_changed", string? where = null, string? subscription = null, bool restart = false) =>
        Backfill.StartAsync(database.DataSource, trigger, where, subscription, restart, CancellationToken.None);

    private Task<BackfillResult> RunAsync(BackfillStart start, int chunkRows = Backfill.DefaultChunkRows, NpgsqlDataSource? dataSource = null) =>
        Backfill.RunAsync(dataSource ?? database.DataSource, start, chunkRows, null, TimeProvider.System, null, CancellationToken.None);

    /// <summary>(READ events, distinct row keys among them) of a trigger.</summary>
    private async Task<(long Events, long Keys)> ReadEventsAsync(string trigger = "orders_changed", string key = "id")
    {
        await using var command = database.DataSource.CreateCommand(
            "SELECT count(*), count(DISTINCT new_data -> $2) FROM trigger_events.event_log WHERE op = 'READ' AND trigger_name = $1");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = trigger });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key });
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    private Task<long> DeliveriesAsync(string subscription) => database.ScalarAsync<long>(
        "SELECT count(*) FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id WHERE s.name = $1", subscription);

    [Test]
    public async Task Every_row_of_ten_thousand_becomes_exactly_one_read_event_with_old_null()
    {
        var start = await StartAsync();
        var result = await RunAsync(start);

        Assert.That((start.Resumed, start.RowsRead), Is.EqualTo((false, 0L)));
        Assert.That(result, Is.EqualTo(new BackfillResult(10_000, 10_000, 10_000, 10_000)));
        Assert.That(await ReadEventsAsync(), Is.EqualTo((10_000L, 10_000L)));
        Assert.That(await database.ScalarAsync<long>(
            """
            SELECT count(*) FROM trigger_events.event_log e JOIN orders o ON o.id = (e.new_data ->> 'id')::bigint
            WHERE e.op = 'READ' AND e.old_data IS NULL AND e.new_data = to_jsonb(o) AND e.subscription_name IS NULL
              AND e.captured_by = session_user AND (e.schema_name, e.table_name) = ('public', 'orders')
            """), Is.EqualTo(10_000), "each event shows its row as it is");
        Assert.That(await database.ScalarAsync<bool>(
            "SELECT bool_and(a.id < b.id) FROM (SELECT id, (new_data ->> 'id')::bigint AS k FROM trigger_events.event_log) a JOIN (SELECT id, (new_data ->> 'id')::bigint AS k FROM trigger_events.event_log) b ON b.k = a.k + 1"),
            Is.True, "events are written in key order");
        Assert.That(await database.FanOutAsync(), Is.EqualTo(10_000));
        Assert.That(await DeliveriesAsync("hook"), Is.EqualTo(10_000));
    }

    [Test]
    public async Task A_chunk_that_rolls_back_leaves_nothing_and_the_next_run_continues_after_the_last_committed_one()
    {
        var start = await StartAsync();
        await database.ScalarAsync<bool>("SELECT done FROM trigger_events.backfill_chunk($1, 3000)", start.Id);
        await using (var connection = await database.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await using var chunk = new NpgsqlCommand("SELECT done FROM trigger_events.backfill_chunk($1, 3000)", connection, transaction);
            chunk.Parameters.Add(new NpgsqlParameter<long> { TypedValue = start.Id });
            await chunk.ExecuteScalarAsync();
            await transaction.RollbackAsync(); // a crash in the middle of a chunk
        }

        var again = await StartAsync();
        var result = await RunAsync(again);

        Assert.That((again.Id, again.Resumed, again.RowsRead), Is.EqualTo((start.Id, true, 3000L)));
        Assert.That((result.RowsRead, result.TotalRowsRead), Is.EqualTo((7000L, 10_000L)));
        Assert.That(await ReadEventsAsync(), Is.EqualTo((10_000L, 10_000L)));
    }

    [Test]
    public async Task Two_runs_of_the_same_backfill_at_once_take_turns_and_give_every_row_once()
    {
        var start = await StartAsync();

        var results = await Task.WhenAll(RunAsync(start, chunkRows: 100), RunAsync(await StartAsync(), chunkRows: 100));

        Assert.That(results.Sum(r => r.RowsRead), Is.EqualTo(10_000));
        Assert.That(await ReadEventsAsync(), Is.EqualTo((10_000L, 10_000L)));
    }

    [Test]
    public async Task The_same_backfill_again_after_it_finished_does_nothing_unless_restarted()
    {
        await RunAsync(await StartAsync());

        var again = await StartAsync();
        var restarted = await StartAsync(restart: true);
        await RunAsync(restarted);

        Assert.That((again.AlreadyDone, again.RowsRead), Is.EqualTo((true, 10_000L)));
        Assert.That((restarted.AlreadyDone, restarted.Resumed, restarted.RowsRead), Is.EqualTo((false, false, 0L)));
        Assert.That(await ReadEventsAsync(), Is.EqualTo((20_000L, 10_000L)));
    }

    [Test]
    public async Task Where_keeps_only_the_rows_it_is_true_for_and_is_a_backfill_of_its_own()
    {
        var paid = await RunAsync(await StartAsync(where: "status = 'paid' AND id <= 4000"));
        var all = await StartAsync();

        Assert.That((paid.RowsRead, paid.Events), Is.EqualTo((10_000L, 1000L)), "every row is read, in bounded chunks; the filter picks");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log WHERE new_data ->> 'status' = 'paid' AND (new_data ->> 'id')::int <= 4000"), Is.EqualTo(1000));
        Assert.That((all.Resumed, all.AlreadyDone), Is.EqualTo((false, false)));
    }

    [Test]
    public async Task A_backfill_for_one_subscription_reaches_that_one_only_even_by_replay_or_start_from()
    {
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('other', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name, operations) VALUES ('no-read', 'orders_changed', '{INSERT}')");

        var start = await StartAsync(subscription: "hook");
        await RunAsync(start);
        var pending = await database.ScalarAsync<long[]>("SELECT array_agg(pending ORDER BY subscription) FROM trigger_events.subscription_status");
        await database.FanOutAsync();
        var replayable = await Replay.CountAsync(database.DataSource, "other", null, DateTimeOffset.UtcNow.AddHours(-1), null, null, CancellationToken.None);
        var late = await new SubscriptionRegistry(database.DataSource).SyncAsync(
            "late-group",
            [new SubscriptionConfig { Name = "late", Trigger = "orders_changed", StartFrom = new StartFrom.Earliest(), Webhook = new WebhookConfig { Url = new Uri("http://127.0.0.1:9/") } }],
            CancellationToken.None);

        Assert.That(start.Subscriptions, Is.EqualTo(1));
        Assert.That(pending, Is.EqualTo(new long[] { 10_000, 0, 0 }), "hook, no-read, other: only hook counts them as pending");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log WHERE subscription_name = 'hook'"), Is.EqualTo(10_000));
        Assert.That((await DeliveriesAsync("hook"), await DeliveriesAsync("other"), await DeliveriesAsync("no-read")), Is.EqualTo((10_000L, 0L, 0L)));
        Assert.That(replayable, Is.Zero, "a replay to another subscription leaves them out");
        Assert.That(late.Single().Backfilled, Is.Zero, "so does a new subscription's start_from: earliest");
    }

    [Test]
    public async Task Without_a_subscription_the_events_go_to_the_subscriptions_that_receive_read()
    {
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name, operations) VALUES ('inserts-only', 'orders_changed', '{INSERT}'), ('reads', 'orders_changed', '{READ}')");

        var start = await StartAsync(where: "id <= 10");
        await RunAsync(start);
        await database.FanOutAsync();

        Assert.That(start.Subscriptions, Is.EqualTo(2));
        Assert.That((await DeliveriesAsync("hook"), await DeliveriesAsync("reads"), await DeliveriesAsync("inserts-only")), Is.EqualTo((10L, 10L, 0L)));
    }

    [Test]
    public async Task Rows_written_during_a_backfill_keep_their_own_events_and_every_row_there_before_gets_one_read()
    {
        using var stop = new CancellationTokenSource();
        var writes = 0;
        var writer = Task.Run(async () =>
        {
            // Rows ahead of the backfill's place and behind it, and updates of rows it reads.
            for (var i = 1; !stop.IsCancellationRequested; i++)
            {
                await database.ExecuteAsync("INSERT INTO orders VALUES ($1, 'new', 'during'), ($2, 'new', 'during')", 10_000L + i, -(long)i);
                await database.ExecuteAsync("UPDATE orders SET note = 'updated during' WHERE id = $1", (long)(i * 37 % 10_000) + 1);
                Volatile.Write(ref writes, i);
            }
        });

        var start = await StartAsync();
        await Backfill.RunAsync(database.DataSource, start, 100, 5000, TimeProvider.System, null, CancellationToken.None);
        var writesDuring = Volatile.Read(ref writes);
        await stop.CancelAsync();
        await writer;

        Assert.That(writesDuring, Is.GreaterThan(0), "the writer wrote while the backfill ran");
        Assert.That(await database.ScalarAsync<long>(
            """
            SELECT count(*) FROM generate_series(1, 10000) k
            JOIN (SELECT (new_data ->> 'id')::bigint AS id, count(*) AS events FROM trigger_events.event_log WHERE op = 'READ' GROUP BY 1) r
              ON r.id = k AND r.events = 1
            """), Is.EqualTo(10_000), "every row there before has exactly one READ event");
        Assert.That(await database.ScalarAsync<long>(
            "SELECT count(*) FROM (SELECT new_data ->> 'id' FROM trigger_events.event_log WHERE op = 'READ' GROUP BY 1 HAVING count(*) > 1) twice"),
            Is.Zero, "no row has two");
        Assert.That(await database.ScalarAsync<long>(
            """
            SELECT count(*) FROM orders o
            LEFT JOIN (SELECT (new_data ->> 'id')::bigint AS id, count(*) AS events FROM trigger_events.event_log WHERE op = 'INSERT' GROUP BY 1) i
              ON i.id = o.id
            WHERE o.note = 'during' AND i.events IS DISTINCT FROM 1
            """), Is.Zero, "every row inserted meanwhile has its INSERT event");
    }

    [Test]
    public async Task The_triggers_payload_columns_and_condition_shape_the_events()
    {
        await database.ScalarAsync<string>(
            "SELECT trigger_events.attach('orders', 'orders_changed', payload_columns => '{id,status}', condition => 'NEW.status = ''paid'' AND OLD.id IS NULL')");

        await RunAsync(await StartAsync());

        Assert.That(await ReadEventsAsync(), Is.EqualTo((2500L, 2500L)));
        Assert.That(await database.ScalarAsync<long>(
            "SELECT count(*) FROM trigger_events.event_log WHERE new_data ->> 'status' = 'paid' AND new_data ?& '{id,status}' AND NOT new_data ? 'note'"),
            Is.EqualTo(2500));
    }

    [Test]
    public async Task A_condition_that_raises_on_a_row_writes_its_event_with_the_error_as_capture_does()
    {
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed', condition => '100 / (NEW.id % 100) > 0')");

        var result = await RunAsync(await StartAsync());

        Assert.That(result.Events, Is.EqualTo(10_000));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log WHERE condition_error LIKE '22012: division by zero'"), Is.EqualTo(100));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log WHERE condition_error IS NOT NULL AND (new_data ->> 'id')::int % 100 <> 0"), Is.Zero);
    }

    [Test]
    public async Task Renamed_payload_and_key_columns_are_followed_as_capture_follows_them()
    {
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed', payload_columns => '{id,status}')");
        var start = await StartAsync();
        await database.ScalarAsync<bool>("SELECT done FROM trigger_events.backfill_chunk($1, 4000)", start.Id);

        await database.ExecuteAsync("ALTER TABLE orders RENAME COLUMN status TO state");
        await database.ExecuteAsync("ALTER TABLE orders RENAME COLUMN id TO order_id");
        var rest = await RunAsync(await StartAsync());

        Assert.That(rest.RowsRead, Is.EqualTo(6000));
        Assert.That(await database.ScalarAsync<long>(
            "SELECT count(DISTINCT coalesce(new_data ->> 'id', new_data ->> 'order_id')) FROM trigger_events.event_log"), Is.EqualTo(10_000));
        Assert.That(await database.ScalarAsync<long>(
            "SELECT count(*) FROM trigger_events.event_log WHERE new_data ?& '{order_id,state}' AND NOT new_data ? 'note'"), Is.EqualTo(6000));
    }

    [Test]
    public async Task A_composite_primary_key_is_read_in_order_with_every_row_once()
    {
        await database.ExecuteAsync("CREATE TABLE lines (order_id int, sku text, day date, qty int, PRIMARY KEY (order_id, sku, day))");
        await database.ExecuteAsync("INSERT INTO lines SELECT g % 13, 'sku-' || (g % 7), date '2026-01-01' + g, g FROM generate_series(1, 3000) g");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('lines', 'lines_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('lines-hook', 'lines_changed')");
        // A day-first date style must not make the place read back as another day.
        await using var dmy = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(database.ConnectionString) { Options = "-c DateStyle=SQL,DMY" }.ConnectionString);

        await RunAsync(await StartAsync("lines_changed"), chunkRows: 7, dataSource: dmy);

        Assert.That(await ReadEventsAsync("lines_changed", "qty"), Is.EqualTo((3000L, 3000L)));
    }

    [Test]
    public async Task Chunks_walk_the_primary_key_index_and_never_scan_the_table()
    {
        var start = await StartAsync(where: "note LIKE 'note 1%'");
        var scans = new List<(long Sequential, long Index)>();
        var done = false;
        while (!done)
        {
            // The session's statistics not reported yet, read before and after the chunk in its
            // transaction: exact, and no wait for them to reach the cumulative views.
            await using var connection = await database.DataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            var before = await ScansAsync(connection, transaction);
            await using (var chunk = new NpgsqlCommand("SELECT done FROM trigger_events.backfill_chunk($1, 1000)", connection, transaction))
            {
                chunk.Parameters.Add(new NpgsqlParameter<long> { TypedValue = start.Id });
                done = (bool)(await chunk.ExecuteScalarAsync())!;
            }

            var after = await ScansAsync(connection, transaction);
            scans.Add((after.Sequential - before.Sequential, after.Index - before.Index));
            await transaction.CommitAsync();
        }

        Assert.That(scans, Has.Count.EqualTo(11), "ten full chunks and the last, empty one");
        Assert.That(scans, Is.All.EqualTo((0L, 1L)), "one index scan per chunk, no sequential scan");

        static async Task<(long Sequential, long Index)> ScansAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
        {
            await using var stats = new NpgsqlCommand(
                "SELECT coalesce(sum(seq_scan), 0)::bigint, coalesce(sum(idx_scan), 0)::bigint FROM pg_stat_xact_user_tables WHERE relname = 'orders'",
                connection, transaction);
            await using var reader = await stats.ExecuteReaderAsync();
            await reader.ReadAsync();
            return (reader.GetInt64(0), reader.GetInt64(1));
        }
    }

    [Test]
    public async Task A_table_without_a_primary_key_is_refused_and_nothing_is_recorded()
    {
        await database.ExecuteAsync("CREATE TABLE notes (body text)");
        await database.ExecuteAsync("INSERT INTO notes VALUES ('a'), ('b')");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('notes', 'notes_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('notes-hook', 'notes_changed')");

        var refused = Assert.ThrowsAsync<PostgresException>(() => StartAsync("notes_changed"));

        Assert.That(refused!.MessageText, Is.EqualTo("trigger_events.backfill: table public.notes has no primary key; a backfill reads a table in primary-key order"));
        Assert.That(refused.SqlState, Is.EqualTo(PostgresErrorCodes.RaiseException));
        await AssertNothingRecordedAsync();
    }

    [TestCase("nope = 1", "invalid filter (--where): column \"nope\" does not exist")]
    [TestCase("id + 1", "invalid filter (--where): argument of WHERE must be type boolean, not type bigint")]
    [TestCase("true; DROP TABLE orders", "invalid filter (--where): syntax error at or near \";\"")]
    [TestCase("true) UNION ALL SELECT 1 FROM orders WHERE (true", "invalid filter (--where): syntax error at or near \"UNION\"")]
    [TestCase("true) END UNION ALL SELECT 1 FROM public.orders WHERE CASE WHEN false THEN (true", "invalid filter (--where): it must be one boolean expression, not more")]
    [TestCase("true) OR (SELECT true); DROP TABLE orders; SELECT (true", "invalid filter (--where): syntax error at or near \";\"")]
    [TestCase("true) END; DROP TABLE orders; SELECT CASE WHEN false THEN (true", "invalid filter (--where): it must be one boolean expression, not more")]
    [TestCase("true /* the rest", "invalid filter (--where): unterminated /* comment at or near \"/* the rest\n) END\"")]
    [TestCase("id IN (SELECT id FROM orders)", "invalid filter (--where): relation \"orders\" does not exist")]
    [TestCase("OLD.id > 0", "invalid filter (--where): missing FROM-clause entry for table \"old\"")]
    public async Task A_where_that_is_not_one_boolean_expression_is_refused_and_runs_nothing(string where, string message)
    {
        var refused = Assert.ThrowsAsync<PostgresException>(() => StartAsync(where: where));

        Assert.That(refused!.MessageText, Is.EqualTo("trigger_events.backfill: " + message));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM orders"), Is.EqualTo(10_000));
        await AssertNothingRecordedAsync();
    }

    [TestCase("no_such_trigger", null, "no event trigger named 'no_such_trigger'")]
    [TestCase("orders_changed", "no_such_subscription", "no subscription named 'no_such_subscription'")]
    [TestCase("orders_changed", "inserts-only", "subscription 'inserts-only' does not receive READ events (its operations: INSERT)")]
    [TestCase("orders_changed", "elsewhere", "subscription 'elsewhere' receives the events of trigger 'other_trigger', not 'orders_changed'")]
    public async Task An_unknown_name_or_a_subscription_that_cannot_receive_read_is_refused(string trigger, string? subscription, string message)
    {
        await database.ExecuteAsync(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, operations) VALUES ('inserts-only', 'orders_changed', '{INSERT}'), ('elsewhere', 'other_trigger', DEFAULT)");

        var refused = Assert.ThrowsAsync<PostgresException>(() => StartAsync(trigger, subscription: subscription));

        Assert.That(refused!.MessageText, Is.EqualTo("trigger_events.backfill: " + message));
        await AssertNothingRecordedAsync();
    }

    [Test]
    public async Task A_trigger_no_subscription_receives_read_for_is_refused()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET operations = '{INSERT,UPDATE}'");

        var refused = Assert.ThrowsAsync<PostgresException>(() => StartAsync());

        Assert.That(refused!.MessageText, Does.StartWith("trigger_events.backfill: no subscription of trigger 'orders_changed' receives READ events"));
        await AssertNothingRecordedAsync();
    }

    [Test]
    public async Task A_trigger_missing_its_condition_functions_is_refused_until_repaired()
    {
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed', condition => 'NEW.id > 0')");
        await database.ExecuteAsync("DROP FUNCTION trigger_events.te_orders_changed_check(orders, orders)");

        var refused = Assert.ThrowsAsync<PostgresException>(() => StartAsync());

        Assert.That(refused!.MessageText, Is.EqualTo("trigger_events.backfill: event trigger 'orders_changed' is missing its condition functions"));
        Assert.That(refused.Hint, Does.StartWith("Repair it with attach"));
        await AssertNothingRecordedAsync();
    }

    [Test]
    public void Pacing_waits_until_the_rows_read_fit_the_rate()
    {
        Assert.That(Backfill.PaceDelay(500, 1000, TimeSpan.FromMilliseconds(100)), Is.EqualTo(TimeSpan.FromMilliseconds(400)));
        Assert.That(Backfill.PaceDelay(500, 1000, TimeSpan.FromMilliseconds(700)), Is.EqualTo(TimeSpan.Zero));
    }

    private async Task AssertNothingRecordedAsync()
    {
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log"), Is.Zero);
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.backfills"), Is.Zero);
    }
}
