using Npgsql;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// <c>subscription_status</c> for the whole database and for one group (migration 000025), the
/// read behind <c>status</c>, the console and each group's backlog gauges.
/// </summary>
public sealed class StatusQueryTests
{
    private TestDatabase database = null!;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync(
            """
            INSERT INTO trigger_events.subscriptions (name, trigger_name, group_name)
            VALUES ('a-hook', 'orders_changed', 'team-a'), ('a-audit', 'orders_changed', 'team-a'),
                   ('b-hook', 'orders_changed', 'team-b')
            """);
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 5) g");
        // 'a-hook' has its five as deliveries, two of them dead; the others have theirs still in the log.
        await database.FanOutAsync("a-hook");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'dead' WHERE event_id IN (SELECT id FROM trigger_events.event_log ORDER BY id LIMIT 2)");
    }

    [TearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    [Test]
    public async Task One_groups_status_read_as_the_worker_role_has_its_subscriptions_only_with_the_figures_of_the_whole()
    {
        await using var asWorker = NpgsqlDataSource.Create(database.WorkerConnectionString);

        var whole = await StatusQueries.GetSubscriptionStatusAsync(asWorker, CancellationToken.None);
        var teamA = await StatusQueries.GetSubscriptionStatusAsync(asWorker, "team-a", CancellationToken.None);
        var nobody = await StatusQueries.GetSubscriptionStatusAsync(asWorker, "team-c", CancellationToken.None);

        Assert.That(whole.Select(status => status.Subscription), Is.EqualTo(new[] { "a-audit", "a-hook", "b-hook" }));
        Assert.That(teamA, Is.EqualTo(whole.Where(status => status.Group == "team-a")).Using<SubscriptionStatus>(SameFigures),
            "the same rows as the whole database's, taken at the same moment");
        Assert.That(teamA.Select(status => (status.Subscription, status.Pending, status.Dead)),
            Is.EqualTo(new[] { ("a-audit", 5L, 0L), ("a-hook", 3L, 2L) }));
        Assert.That(nobody, Is.Empty, "a group without subscriptions");
    }

    [Test]
    public async Task One_groups_status_counts_no_other_groups_backlog()
    {
        // Function calls counted in this transaction: the events not yet fanned out are counted
        // by a function of their own, once per subscription read.
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var track = new NpgsqlCommand("SET LOCAL track_functions = 'all'", connection, transaction))
        {
            await track.ExecuteNonQueryAsync();
        }

        var subscriptions = await CountAsync("SELECT count(*) FROM trigger_events.subscription_status_rows('team-b')");
        var counted = await CountAsync(
            "SELECT calls FROM pg_stat_xact_user_functions WHERE schemaname = 'trigger_events' AND funcname = 'events_not_fanned_out'");

        Assert.That((subscriptions, counted), Is.EqualTo((1L, 1L)), "team B's one subscription read, and only its backlog counted");

        async Task<long> CountAsync(string sql)
        {
            await using var command = new NpgsqlCommand(sql, connection, transaction);
            return (long)(await command.ExecuteScalarAsync())!;
        }
    }

    [Test]
    public async Task The_view_still_reads_every_group_for_roles_granted_it_alone()
    {
        // A dashboard's role given the view and its function by hand, as sql/README.md says.
        await using var reader = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT USAGE ON SCHEMA trigger_events TO {reader.Name}");
        await database.ExecuteAsync($"GRANT SELECT ON trigger_events.subscription_status TO {reader.Name}");
        await database.ExecuteAsync($"GRANT EXECUTE ON FUNCTION trigger_events.subscription_status_rows() TO {reader.Name}");
        await using var asReader = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(reader.ConnectionString) { Pooling = false }.ConnectionString);

        var rows = await StatusQueries.GetSubscriptionStatusAsync(asReader, CancellationToken.None);
        var oneGroup = Assert.ThrowsAsync<PostgresException>(
            async () => await StatusQueries.GetSubscriptionStatusAsync(asReader, "team-a", CancellationToken.None));

        Assert.That(rows.Select(status => (status.Subscription, status.Pending)),
            Is.EqualTo(new[] { ("a-audit", 5L), ("a-hook", 3L), ("b-hook", 5L) }));
        Assert.That(oneGroup!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege), "one group's read is the worker's right, not granted here");
    }

    private static bool SameFigures(SubscriptionStatus x, SubscriptionStatus y) =>
        x with { OldestPendingAgeSeconds = null } == y with { OldestPendingAgeSeconds = null };
}
