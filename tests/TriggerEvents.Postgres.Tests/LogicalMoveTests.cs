using System.Diagnostics;
using Npgsql;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// A database moved by a logical dump (pg_dump, then psql) or by logical replication (migration
/// 000027): its tables get other OIDs, a table with a dropped column has its columns numbered
/// again, and on another server transaction ids start over. Capture keeps working on the copy,
/// retention and workers refuse it, and migrate repairs it.
/// </summary>
public sealed class LogicalMoveTests
{
    /// <summary>How far ahead of this server's transaction ids the other server's were, in the second test.</summary>
    private const long OtherServerAhead = 100_000_000;

    private TestDatabase source = null!;
    private TestDatabase copy = null!;

    [SetUp]
    public async Task CreateDatabases()
    {
        source = await TestDatabase.CreateAsync();
        copy = await TestDatabase.CreateAsync(migrated: false);
        // A column dropped before the payload columns: a restore numbers the later ones again.
        await source.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, secret text, gone int, status text, note text)");
        await source.ExecuteAsync("ALTER TABLE orders DROP COLUMN gone");
        await source.ExecuteAsync("INSERT INTO orders VALUES (0, 's0', 'new', 'before the subscription')");
        await source.ScalarAsync<string>(
            "SELECT trigger_events.attach('orders', 'orders_changed', update_columns => ARRAY['status'], payload_columns => ARRAY['id', 'status', 'note'])");
        await source.ExecuteAsync("INSERT INTO orders VALUES (-1, 's', 'new', 'before the subscription')");
        await source.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('hook', 'orders_changed')");
        // Three events given to the subscription (one delivered), then two its place has not passed.
        await source.ExecuteAsync("INSERT INTO orders SELECT g, 's' || g, 'new', 'old' FROM generate_series(1, 3) g");
        await source.FanOutAsync();
        await source.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered' WHERE event_id = (SELECT min(event_id) FROM trigger_events.deliveries)");
        await source.ExecuteAsync("INSERT INTO orders SELECT g, 's' || g, 'new', 'old, not given yet' FROM generate_series(4, 5) g");
    }

    [TearDown]
    public async Task DropDatabases()
    {
        await copy.DisposeAsync();
        await source.DisposeAsync();
    }

    [Test]
    public async Task A_copy_on_the_same_server_keeps_capturing_refuses_retention_and_migrate_renumbers_and_regenerates_it()
    {
        await MoveAsync();

        var reason = await copy.ScalarAsync<string>("SELECT trigger_events.moved_reason()");
        // The applications' writes go on, captured with the payload columns by name.
        await copy.ExecuteAsync("INSERT INTO orders VALUES (6, 's6', 'new', 'after the move')");
        await copy.ExecuteAsync("UPDATE orders SET status = 'paid' WHERE id = 2");
        var capturedOnTheCopy = await NewRowsAsync(after: 5);
        var retention = Assert.ThrowsAsync<PostgresException>(
            () => copy.ScalarAsync<long>("SELECT trigger_events.delete_delivered_events(ARRAY(SELECT id FROM trigger_events.event_log))"));

        var result = await Migrator.MigrateAsync(copy.DataSource, CancellationToken.None);
        await copy.ExecuteAsync("INSERT INTO orders VALUES (7, 's7', 'new', 'after the repair')");
        var triggers = await copy.ScalarAsync<string>(
            "SELECT concat_ws(' ', array_to_string(update_columns, ','), array_to_string(payload_columns, ','), health) FROM trigger_events.triggers");

        Assert.That(reason, Does.StartWith("its tables have other OIDs"));
        Assert.That(capturedOnTheCopy, Is.EqualTo(new[] { """{"id": 6, "note": "after the move", "status": "new"}""", """{"id": 2, "note": "old", "status": "paid"}""" }),
            "captured, and the column that is not payload left out, though its number changed");
        Assert.That(retention!.SqlState, Is.EqualTo(PostgresErrorCodes.ObjectNotInPrerequisiteState));
        Assert.That(retention.MessageText, Does.StartWith("trigger_events: retention deletes nothing from a database moved here"));
        Assert.That(result.Repaired, Does.StartWith("its tables have other OIDs").And.Contain("1 event triggers regenerated, 1 renumbered").And.Not.Contain("places"),
            "the same server: the places hold");
        Assert.That(await copy.ScalarAsync<string>("SELECT coalesce(trigger_events.moved_reason(), 'none')"), Is.EqualTo("none"));
        Assert.That(triggers, Is.EqualTo("status id,status,note ok"));
        Assert.That(await NewRowsAsync(after: 6), Is.EqualTo(new[] { """{"id": 2, "note": "old", "status": "paid"}""", """{"id": 7, "note": "after the repair", "status": "new"}""" }));
        Assert.That(await copy.FanOutAsync(), Is.EqualTo(5), "the two the place had not passed, and the three captured since");
        Assert.That((await Migrator.MigrateAsync(copy.DataSource, CancellationToken.None)).Repaired, Is.Null, "repaired once");
    }

    [Test]
    public async Task A_copy_on_another_server_gets_every_event_its_places_had_not_passed_and_every_one_since_once()
    {
        await MoveAsync();
        // As on a server whose transaction ids are far below the old one's: the old state is
        // moved that far ahead of this server's ids, and its identifier is another's.
        await copy.ExecuteAsync($"""
            UPDATE trigger_events.event_log SET transaction_id = (transaction_id::text::bigint + {OtherServerAhead})::text::xid8;
            UPDATE trigger_events.subscription_positions SET position = (
                (pg_snapshot_xmin(position)::text::bigint + {OtherServerAhead}) || ':' || (pg_snapshot_xmax(position)::text::bigint + {OtherServerAhead}) || ':'
                || coalesce((SELECT string_agg((x::text::bigint + {OtherServerAhead})::text, ',') FROM pg_snapshot_xip(position) x), ''))::pg_snapshot;
            UPDATE trigger_events.installation SET system_identifier = system_identifier + 1;
            """);
        await copy.ExecuteAsync("INSERT INTO orders VALUES (6, 's6', 'new', 'after the move')");
        await copy.ExecuteAsync("UPDATE orders SET status = 'paid' WHERE id = 2");
        var beforeRepair = await copy.FanOutAsync();

        var result = await Migrator.MigrateAsync(copy.DataSource, CancellationToken.None);
        var given = await DeliveriesAsync();
        await copy.ExecuteAsync("INSERT INTO orders VALUES (7, 's7', 'new', 'after the repair')");
        var afterRepair = await copy.FanOutAsync();

        Assert.That(beforeRepair, Is.Zero, "from the old server's places nothing new is ever found");
        Assert.That(result.Repaired, Does.Contain("4 deliveries made of events not yet given to their subscriptions, the places taken anew"));
        Assert.That(given, Is.EqualTo(new[]
        {
            "INSERT 1 delivered", "INSERT 2 pending", "INSERT 3 pending", "INSERT 4 pending", "INSERT 5 pending", "INSERT 6 pending", "UPDATE 2 pending",
        }), "the rows before the subscription get nothing; each other event one delivery");
        Assert.That(afterRepair, Is.EqualTo(1), "the fan-out goes on from the new place");
        Assert.That(await copy.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log WHERE transaction_id::text::bigint > 2 AND op = 'INSERT' AND (new_data->>'id')::int <= 5"),
            Is.Zero, "the old server's transaction ids frozen");
        Assert.That(await copy.ScalarAsync<string>("SELECT coalesce(trigger_events.moved_reason(), 'none')"), Is.EqualTo("none"));
    }

    [Test]
    public async Task A_copy_on_another_server_already_past_the_old_ids_lets_each_place_tell_old_from_new()
    {
        await MoveAsync();
        // Another server whose transaction ids are past every one of the old server's.
        await copy.ExecuteAsync("UPDATE trigger_events.installation SET system_identifier = system_identifier + 1");
        await copy.ExecuteAsync("INSERT INTO orders VALUES (6, 's6', 'new', 'after the move')");
        await copy.ExecuteAsync("UPDATE orders SET status = 'paid' WHERE id = 2");

        var result = await Migrator.MigrateAsync(copy.DataSource, CancellationToken.None);

        Assert.That(result.Repaired, Does.Contain("4 deliveries made of events not yet given to their subscriptions, the places taken anew, 0 events of the old server frozen"));
        Assert.That(await DeliveriesAsync(), Is.EqualTo(new[]
        {
            "INSERT 1 delivered", "INSERT 2 pending", "INSERT 3 pending", "INSERT 4 pending", "INSERT 5 pending", "INSERT 6 pending", "UPDATE 2 pending",
        }));
        await copy.ExecuteAsync("INSERT INTO orders VALUES (7, 's7', 'new', 'after the repair')");
        Assert.That(await copy.FanOutAsync(), Is.EqualTo(1));
    }

    [Test]
    public async Task A_registry_that_names_another_table_is_left_for_attach_and_no_capture_goes_onto_that_table()
    {
        // As a dump of a schema before 000027 leaves it: the registry's OID, on the copy, is
        // another table's.
        await source.ExecuteAsync("CREATE TABLE bystander (id int PRIMARY KEY)");
        await source.ExecuteAsync("UPDATE trigger_events.event_triggers SET relid = 'bystander'::regclass");
        await source.ExecuteAsync("UPDATE trigger_events.installation SET event_log_oid = 1");

        var result = await Migrator.MigrateAsync(source.DataSource, CancellationToken.None);

        Assert.That(result.Repaired, Does.Contain("0 event triggers regenerated").And.Contain("not found on their tables, to be attached again: orders_changed"));
        Assert.That(await source.ScalarAsync<long>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'bystander'::regclass"), Is.Zero);
    }

    [Test]
    public async Task The_upgrade_to_a_registry_by_regclass_keeps_the_grants_a_dba_gave_on_the_triggers_view()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await Migrator.MigrateAsync(database.DataSource, 26, CancellationToken.None);
        await using var dashboard = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT USAGE ON SCHEMA trigger_events TO {dashboard.Name}; GRANT SELECT ON trigger_events.triggers TO {dashboard.Name}");

        await Migrator.MigrateAsync(database.DataSource, CancellationToken.None);
        await using var connection = await dashboard.OpenAsync();
        var read = await new NpgsqlCommand("SELECT count(*) FROM trigger_events.triggers", connection).ExecuteScalarAsync();

        Assert.That(read, Is.Zero, "the view is readable by the role, as before the upgrade");
        Assert.That(await database.ScalarAsync<string>("SELECT data_type FROM information_schema.columns WHERE table_schema = 'trigger_events' AND table_name = 'event_triggers' AND column_name = 'relid'"),
            Is.EqualTo("regclass"));
    }

    /// <summary>Each delivery as "op row-id status", in event order.</summary>
    private async Task<List<string>> DeliveriesAsync()
    {
        await using var command = copy.DataSource.CreateCommand(
            """
            SELECT e.op || ' ' || (coalesce(e.new_data, e.old_data)->>'id') || ' ' || d.status
            FROM trigger_events.deliveries d JOIN trigger_events.event_log e ON e.id = d.event_id ORDER BY e.id
            """);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<string>();
        while (await reader.ReadAsync())
        {
            rows.Add(reader.GetString(0));
        }

        return rows;
    }

    /// <summary>The new row images of the copy's events captured after the first <paramref name="after"/> rows' own, in order.</summary>
    private async Task<List<string>> NewRowsAsync(int after)
    {
        await using var command = copy.DataSource.CreateCommand(
            "SELECT new_data::text FROM trigger_events.event_log ORDER BY id OFFSET (SELECT count(*) FROM trigger_events.event_log WHERE (new_data->>'id')::int <= $1 AND op = 'INSERT')");
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = after });
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<string>();
        while (await reader.ReadAsync())
        {
            rows.Add(reader.GetString(0));
        }

        return rows;
    }

    /// <summary>pg_dump of the source database, restored into the copy with psql, as a DBA moves a database.</summary>
    private async Task MoveAsync()
    {
        var bin = LocalCluster.FindBinaries();
        Assume.That(bin, Is.Not.Null, "pg_dump and psql come with the PostgreSQL server's packages");
        var from = new NpgsqlConnectionStringBuilder(source.ConnectionString);
        var to = new NpgsqlConnectionStringBuilder(copy.ConnectionString);
        var dump = Path.Combine(Path.GetTempPath(), $"te-move-{Guid.NewGuid():N}.sql");
        try
        {
            await RunAsync(Path.Combine(bin!, "pg_dump"), from, "--file", dump, from.Database!);
            await RunAsync(Path.Combine(bin!, "psql"), to, "--quiet", "--set", "ON_ERROR_STOP=1", "--file", dump, to.Database!);
        }
        finally
        {
            File.Delete(dump);
        }
    }

    private static async Task RunAsync(string program, NpgsqlConnectionStringBuilder server, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "--host", server.Host!, "--port", server.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--username", server.Username! }.Concat(arguments))
        {
            start.ArgumentList.Add(argument);
        }

        if (server.Password is not null)
        {
            start.Environment["PGPASSWORD"] = server.Password;
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.That(process.ExitCode, Is.Zero, $"{Path.GetFileName(program)}: {await error}{await output}");
    }
}
