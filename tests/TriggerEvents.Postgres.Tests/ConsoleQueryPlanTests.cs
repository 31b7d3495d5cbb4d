using Npgsql;
using NpgsqlTypes;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The web console's queries on a log and a delivery history large enough for the planner to
/// prefer a sequential scan if one were possible: each reads through an index, and keyset paging
/// and time bounds return exactly the rows they should.
/// </summary>
[NonParallelizable]
public sealed class ConsoleQueryPlanTests
{
    private const int Events = 200_000;
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private TestDatabase database = null!;
    private int hook;

    [OneTimeSetUp]
    public async Task CreateHistory()
    {
        database = await TestDatabase.CreateAsync();
        // Two attached triggers, so the triggers page counts condition errors once for each.
        await database.ExecuteAsync("CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL)");
        await database.ExecuteAsync("CREATE TABLE refunds (id bigint PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed', condition => 'NEW.status <> ''draft''')");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('refunds', 'refunds_changed')");
        hook = await database.ScalarAsync<int>("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('hook', 'orders_changed') RETURNING id");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('audit', 'orders_changed')");
        // One event a second from Start, one in five thousand captured with a condition error;
        // every event delivered to both subscriptions but the last few hundred, and a dead letter
        // every thousand.
        await database.ExecuteAsync($"""
            INSERT INTO trigger_events.event_log (trigger_name, schema_name, table_name, op, new_data, captured_at, condition_error)
            SELECT 'orders_changed', 'public', 'orders', 'INSERT', jsonb_build_object('id', g), '{Start:O}'::timestamptz + g * interval '1 second',
                   CASE WHEN g % 5000 = 0 THEN 'column "status" does not exist' END
            FROM generate_series(1, {Events}) g
            """);
        await database.ExecuteAsync($"""
            INSERT INTO trigger_events.deliveries (subscription_id, event_id, status, attempts, delivered_at)
            SELECT s.id, e.id,
                   (CASE WHEN e.id > {Events - 300} THEN 'pending' WHEN e.id > {Events - 400} THEN 'in_flight'
                         WHEN e.id % 1000 = 0 THEN 'dead' ELSE 'delivered' END)::trigger_events.delivery_status,
                   1, CASE WHEN e.id <= {Events - 400} THEN e.captured_at END
            FROM trigger_events.event_log e CROSS JOIN trigger_events.subscriptions s
            """);
        await database.ExecuteAsync("""
            INSERT INTO trigger_events.attempts (subscription_id, event_id, attempt, started_at, duration_ms, http_status)
            SELECT d.subscription_id, d.event_id, 1, e.captured_at, 3, CASE WHEN d.status = 'dead' THEN 500 ELSE 200 END
            FROM trigger_events.deliveries d JOIN trigger_events.event_log e ON e.id = d.event_id
            ORDER BY e.captured_at
            """);
        // An hour of rates' counts, as fifty workers leave them, before they are pruned.
        await database.ExecuteAsync("""
            INSERT INTO trigger_events.attempt_counts (subscription_id, minute, worker, attempts, failures)
            SELECT s.id, date_trunc('minute', now()) - m * interval '1 minute', gen_random_uuid(), 600, 6
            FROM trigger_events.subscriptions s, generate_series(0, 60) m, generate_series(1, 50) w
            """);
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.attempt_counts");
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.event_log");
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.deliveries");
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.attempts");
    }

    [OneTimeTearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private static IEnumerable<string?> StatusesAndAll() => [null, .. ConsoleQueries.Statuses];

    [TestCaseSource(nameof(StatusesAndAll))]
    public async Task A_deliveries_page_reads_through_an_index_for_every_status_and_filter(string? status)
    {
        var pages = new (long Before, long After, DateTimeOffset? Since, DateTimeOffset? Until)[]
        {
            (long.MaxValue, 0, null, null),
            (Events / 2, 0, null, null),
            (Events / 2 + 1, Events / 2, null, null),
            (long.MaxValue, 0, Start.AddHours(10), Start.AddHours(11)),
        };
        foreach (var (before, after, since, until) in pages)
        {
            var plan = await PlanAsync(ConsoleQueries.DeliveriesSql(status), hook, before, after, Time(since), Time(until), 50);

            Assert.That(plan, Has.None.Contains("Seq Scan on deliveries").And.None.Contains("Seq Scan on event_log"), string.Join('\n', plan));
        }
    }

    [Test]
    public async Task The_event_page_reads_its_deliveries_and_attempts_through_indexes()
    {
        foreach (var sql in new[] { ConsoleQueries.EventSql, ConsoleQueries.EventDeliveriesSql, ConsoleQueries.EventAttemptsSql })
        {
            var plan = await PlanAsync(sql, 123_456L);

            // The subscriptions are few: scanning them to probe each one's index is the plan.
            Assert.That(plan, Has.None.Contains("Seq Scan on event_log").And.None.Contains("Seq Scan on deliveries").And.None.Contains("Seq Scan on attempts"), string.Join('\n', plan));
        }

        var deliveries = await ConsoleQueries.EventDeliveriesAsync(database.DataSource, 123_000, CancellationToken.None);
        var attempts = await ConsoleQueries.EventAttemptsAsync(database.DataSource, 123_000, CancellationToken.None);
        Assert.That(deliveries.Select(d => (d.Subscription, d.Status)), Is.EqualTo(new[] { ("audit", "dead"), ("hook", "dead") }));
        Assert.That(attempts.Select(a => (a.Subscription, a.HttpStatus)), Is.EquivalentTo(new[] { ("audit", (int?)500), ("hook", 500) }));
    }

    [Test]
    public async Task The_overview_rates_and_the_time_search_read_through_indexes()
    {
        var rates = await PlanAsync(ConsoleQueries.RatesSql, new NpgsqlParameter<TimeSpan> { TypedValue = TimeSpan.FromMinutes(5) });
        var search = await PlanAsync(ConsoleQueries.FirstIdAtOrAfter, new NpgsqlParameter<DateTimeOffset> { TypedValue = Start.AddHours(20) });

        Assert.That(rates, Has.None.Contains("Seq Scan on attempt_counts").And.Some.Contains("attempt_counts_pkey"), string.Join('\n', rates));
        Assert.That(search, Has.None.Contains("Seq Scan on event_log"), string.Join('\n', search));
    }

    [TestCase(null)]
    [TestCase("hook")]
    public async Task The_dead_letters_page_reads_through_the_dead_index(string? subscription)
    {
        var plan = await PlanAsync(
            DeadLetters.ListSql, Text(subscription), new NpgsqlParameter { Value = DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint },
            Time(null), Time(null), 200);
        var listed = await DeadLetters.ListAsync(database.DataSource, new DeliveryFilter(subscription), 200, CancellationToken.None);

        Assert.That(plan, Has.None.Contains("Seq Scan on deliveries").And.None.Contains("Seq Scan on event_log"), string.Join('\n', plan));
        Assert.That(listed, Has.Count.EqualTo(subscription is null ? 200 : 199));
        Assert.That(listed.Select(d => d.EventId), Is.Ordered);
    }

    [TestCase(null)]
    [TestCase("hook")]
    public async Task The_dead_letters_count_reads_through_the_dead_index(string? subscription)
    {
        var plan = await PlanAsync(
            DeadLetters.CountSql, Text(subscription), new NpgsqlParameter { Value = DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint },
            Time(null), Time(null));
        var count = await DeadLetters.CountAsync(database.DataSource, new DeliveryFilter(subscription), CancellationToken.None);

        Assert.That(plan, Has.None.Contains("Seq Scan on deliveries").And.None.Contains("Seq Scan on event_log"), string.Join('\n', plan));
        Assert.That(count, Is.EqualTo(subscription is null ? 398 : 199));
    }

    [Test]
    public async Task The_dead_letters_count_stays_on_the_dead_index_when_a_tenth_of_the_deliveries_are_dead()
    {
        // Where the planner, left to itself, reads the whole log and the whole of deliveries.
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var kill = new NpgsqlCommand(
            "UPDATE trigger_events.deliveries SET status = 'dead' WHERE status = 'delivered' AND event_id % 10 = 0; ANALYZE trigger_events.deliveries",
            connection, transaction))
        {
            await kill.ExecuteNonQueryAsync();
        }

        var unpinned = await ExplainAsync(connection, transaction);
        await using (var pin = new NpgsqlCommand(TriggerEvents.Postgres.Delivery.DeliveryStore.PinPlanSql, connection, transaction))
        {
            await pin.ExecuteNonQueryAsync();
        }

        var plan = await ExplainAsync(connection, transaction);
        await transaction.RollbackAsync();

        Assert.That(unpinned, Has.Some.Contains("Seq Scan"), "the case this guards against: " + string.Join('\n', unpinned));
        Assert.That(plan, Has.None.Contains("Seq Scan on deliveries").And.None.Contains("Seq Scan on event_log"), string.Join('\n', plan));
        Assert.That(plan, Has.Some.Contains("deliveries_dead"), string.Join('\n', plan));

        static async Task<List<string>> ExplainAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
        {
            await using var explain = new NpgsqlCommand("EXPLAIN " + DeadLetters.CountSql, connection, transaction);
            DeadLetters.AddFilter(explain, new DeliveryFilter(null));
            var lines = new List<string>();
            await using var reader = await explain.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                lines.Add(reader.GetString(0));
            }

            return lines;
        }
    }

    [Test]
    public async Task The_triggers_page_counts_condition_errors_through_their_partial_index()
    {
        var plan = await PlanAsync(EventTriggerAdmin.ListSql);
        var triggers = await EventTriggerAdmin.ListAsync(database.DataSource, CancellationToken.None);

        Assert.That(plan, Has.None.Contains("Seq Scan on event_log").And.Some.Contains("event_log_condition_errors"), string.Join('\n', plan));
        Assert.That(triggers.Select(t => (t.Name, t.ConditionErrors)), Is.EqualTo(new[] { ("orders_changed", 40L), ("refunds_changed", 0L) }));
    }

    [Test]
    public async Task The_time_search_finds_the_first_event_captured_at_or_after_a_time()
    {
        Assert.That(await ConsoleQueries.FirstIdAtOrAfterAsync(database.DataSource, Start.AddSeconds(1), CancellationToken.None), Is.EqualTo(1));
        Assert.That(await ConsoleQueries.FirstIdAtOrAfterAsync(database.DataSource, Start.AddSeconds(777.5), CancellationToken.None), Is.EqualTo(778));
        Assert.That(await ConsoleQueries.FirstIdAtOrAfterAsync(database.DataSource, Start.AddSeconds(Events), CancellationToken.None), Is.EqualTo(Events));
        Assert.That(await ConsoleQueries.FirstIdAtOrAfterAsync(database.DataSource, Start.AddYears(1), CancellationToken.None), Is.EqualTo(Events + 1));
        Assert.That(await ConsoleQueries.FirstIdAtOrAfterAsync(database.DataSource, Start.AddYears(-1), CancellationToken.None), Is.EqualTo(1));
    }

    [Test]
    public async Task Keyset_pages_follow_each_other_without_gaps_or_repeats()
    {
        var first = await ConsoleQueries.DeliveriesAsync(database.DataSource, new DeliveryPage("hook", "dead", Limit: 30), CancellationToken.None);
        var second = await ConsoleQueries.DeliveriesAsync(database.DataSource, new DeliveryPage("hook", "dead", Before: first![^1].EventId, Limit: 30), CancellationToken.None);
        var expected = Enumerable.Range(0, 60).Select(i => (long)(Events - 1000 - i * 1000)).ToArray();

        Assert.That(first.Concat(second!).Select(d => d.EventId), Is.EqualTo(expected));
        Assert.That(first.Concat(second!).Select(d => d.Status), Is.All.EqualTo("dead"));
    }

    [Test]
    public async Task A_time_range_and_an_event_id_bound_the_page()
    {
        var range = await ConsoleQueries.DeliveriesAsync(
            database.DataSource, new DeliveryPage("hook", null, Since: Start.AddSeconds(100), Until: Start.AddSeconds(110), Limit: 500), CancellationToken.None);
        var one = await ConsoleQueries.DeliveriesAsync(database.DataSource, new DeliveryPage("hook", null, EventId: 4242), CancellationToken.None);
        var none = await ConsoleQueries.DeliveriesAsync(database.DataSource, new DeliveryPage("nobody", null), CancellationToken.None);

        Assert.That(range!.Select(d => d.EventId), Is.EqualTo(Enumerable.Range(100, 10).Reverse().Select(i => (long)i)));
        Assert.That(one!.Select(d => d.EventId), Is.EqualTo(new[] { 4242L }));
        Assert.That(none, Is.Null);
    }

    private static NpgsqlParameter Text(string? value) =>
        new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text };

    private static NpgsqlParameter Time(DateTimeOffset? value) =>
        new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.TimestampTz };

    private async Task<List<string>> PlanAsync(string sql, params object[] parameters)
    {
        await using var command = database.DataSource.CreateCommand("EXPLAIN " + sql);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(parameter switch
            {
                NpgsqlParameter p => p,
                int i => new NpgsqlParameter<int> { TypedValue = i },
                long l => new NpgsqlParameter<long> { TypedValue = l },
                _ => throw new ArgumentException(parameter.GetType().Name),
            });
        }

        var plan = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            plan.Add(reader.GetString(0));
        }

        return plan;
    }
}
