using System.Text.Json;
using Npgsql;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// Capture at the edges (SPEC.md "Capture details"): only the attached table produces its events,
/// a condition never fails the write, schema changes never break writes or mislabel events,
/// health, upgrades and locks. Privileges are tried as unprivileged login roles.
/// </summary>
public sealed class CaptureEdgeTests
{
    private TestDatabase database = null!;

    [OneTimeSetUp]
    public async Task CreateDatabase() => database = await TestDatabase.CreateAsync();

    [OneTimeTearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private static string Unique(string prefix) => $"{prefix}_{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    private async Task<string> CreateOrdersTableAsync()
    {
        var name = Unique("orders");
        await database.ExecuteAsync($"CREATE TABLE {name} (id bigint PRIMARY KEY, status text, amount numeric, note text)");
        return name;
    }

    private Task<string> AttachAsync(string table, string trigger, string extra = "") =>
        database.ScalarAsync<string>($"SELECT trigger_events.attach('{table}', '{trigger}'{extra})");

    private Task<string> HealthAsync(string trigger) =>
        database.ScalarAsync<string>("SELECT health FROM trigger_events.triggers WHERE name = $1", trigger);

    private async Task<List<Captured>> EventsAsync(string trigger)
    {
        await using var command = database.DataSource.CreateCommand(
            "SELECT schema_name, table_name, op, new_data::text, condition_error FROM trigger_events.event_log WHERE trigger_name = $1 ORDER BY id");
        command.Parameters.Add(new NpgsqlParameter { Value = trigger });
        await using var reader = await command.ExecuteReaderAsync();
        var events = new List<Captured>();
        while (await reader.ReadAsync())
        {
            events.Add(new Captured(
                reader.GetString(0), reader.GetString(1), reader.GetString(2),
                reader.IsDBNull(3) ? null : JsonDocument.Parse(reader.GetString(3)).RootElement.Clone(),
                reader.IsDBNull(4) ? null : reader.GetString(4)));
        }

        return events;
    }

    /// <summary>The role the README tells DBAs to create for invoke: USAGE on the schema, EXECUTE on invoke.</summary>
    private async Task<LoginRole> InvokerRoleAsync(string table)
    {
        var role = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync(
            $"GRANT USAGE ON SCHEMA trigger_events TO {role.Name}; GRANT EXECUTE ON FUNCTION trigger_events.invoke(text, jsonb) TO {role.Name}; " +
            $"GRANT ALL ON {table} TO {role.Name}; GRANT TEMPORARY ON DATABASE {database.Name} TO {role.Name}");
        return role;
    }

    // ---------------------------------------------------------------------------------------
    // Only the attached table can produce its events.
    // ---------------------------------------------------------------------------------------

    [TestCase("INSERT", "insert", "REFERENCING NEW TABLE AS te_new FOR EACH STATEMENT")]
    [TestCase("DELETE", "delete", "REFERENCING OLD TABLE AS te_old FOR EACH STATEMENT")]
    [TestCase("UPDATE", "row", "FOR EACH ROW")]
    public async Task A_role_with_usage_on_the_schema_cannot_put_a_capture_function_on_a_table_of_its_own(string op, string function, string shape)
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'real', 1, NULL)");
        var id = await database.ScalarAsync<int>("SELECT id FROM trigger_events.event_triggers WHERE name = $1", trigger);
        var before = (await EventsAsync(trigger)).Count;
        await using var role = await InvokerRoleAsync(table);

        await using (var connection = await role.OpenAsync())
        {
            await new NpgsqlCommand($"CREATE TEMP TABLE fake (LIKE {table}); INSERT INTO fake VALUES (7, 'forged', 1000000, NULL)", connection).ExecuteNonQueryAsync();
            var onTemp = Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand(
                $"CREATE TRIGGER \"te_{trigger}_{op.ToLowerInvariant()}\" AFTER {op} ON fake {shape} EXECUTE FUNCTION trigger_events.capture_{id}_{function}()",
                connection).ExecuteNonQueryAsync());
            Assert.That(onTemp!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege), onTemp.MessageText);
            var called = Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand($"SELECT trigger_events.capture_{id}_{function}()", connection).ExecuteScalarAsync());
            Assert.That(called!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege), called.MessageText);

            // The role's own writes to the attached table are captured, with the role recorded.
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (2, 'by app', 2, NULL)", connection).ExecuteNonQueryAsync();
        }

        var events = await EventsAsync(trigger);
        Assert.That(events.Skip(before).Select(e => e.New?.GetProperty("status").GetString()), Is.EqualTo(new[] { "by app" }));
        Assert.That(await database.ScalarAsync<string>("SELECT captured_by FROM trigger_events.event_log WHERE trigger_name = $1 ORDER BY id DESC LIMIT 1", trigger),
            Is.EqualTo(role.Name));
    }

    [Test]
    public async Task A_capture_function_fired_by_any_other_trigger_raises_and_records_nothing()
    {
        // As the schema owner, who could execute it: the function checks who fired it.
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        var id = await database.ScalarAsync<int>("SELECT id FROM trigger_events.event_triggers WHERE name = $1", trigger);
        var decoy = await CreateOrdersTableAsync();
        await database.ExecuteAsync(
            $"CREATE TRIGGER \"te_{trigger}_insert\" AFTER INSERT ON {decoy} REFERENCING NEW TABLE AS te_new FOR EACH STATEMENT EXECUTE FUNCTION trigger_events.capture_{id}_insert(); " +
            $"CREATE TRIGGER \"te_{trigger}_update\" AFTER UPDATE ON {decoy} FOR EACH ROW EXECUTE FUNCTION trigger_events.capture_{id}_row()");

        var insert = Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync($"INSERT INTO {decoy} VALUES (1, 'forged', 1, NULL)"));
        await database.ExecuteAsync($"ALTER TABLE {decoy} DISABLE TRIGGER \"te_{trigger}_insert\"; INSERT INTO {decoy} VALUES (1, 'x', 1, NULL)");
        var update = Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync($"UPDATE {decoy} SET status = 'forged'"));

        Assert.That(insert!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege));
        Assert.That(insert.MessageText, Does.Contain("runs only from the triggers attach made").And.Contain(decoy));
        Assert.That(update!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege));
        Assert.That(await EventsAsync(trigger), Is.Empty);
    }

    [TestCase("", TestName = "{m}(no options)")]
    [TestCase(", payload_columns => '{id,new,old}'", TestName = "{m}(payload columns)")]
    [TestCase(", condition => 'new.id > 0 OR old.id > 0'", TestName = "{m}(a condition)")]
    public async Task Columns_named_new_and_old_are_columns_and_each_image_is_the_whole_row(string options)
    {
        // A plain table's capture reads its transition tables as "new" and "old": a column of
        // that name must not stand in for the row (a writer would choose the image).
        var table = Unique("named");
        await database.ExecuteAsync($"""CREATE TABLE {table} (id int PRIMARY KEY, "new" jsonb, "old" text)""");
        var trigger = Unique("t");
        await AttachAsync(table, trigger, options);

        await database.ExecuteAsync($$"""INSERT INTO {{table}} VALUES (1, '{"id": 999, "forged": true}', 'was')""");
        await database.ExecuteAsync($"""UPDATE {table} SET "old" = 'is' WHERE id = 1""");
        await database.ExecuteAsync($"DELETE FROM {table} WHERE id = 1");
        var images = await database.ScalarAsync<string>(
            "SELECT string_agg(op || ' ' || coalesce(old_data::text, '-') || ' ' || coalesce(new_data::text, '-'), ' | ' ORDER BY id) FROM trigger_events.event_log WHERE trigger_name = $1",
            trigger);

        Assert.That(images, Is.EqualTo(
            """INSERT - {"id": 1, "new": {"id": 999, "forged": true}, "old": "was"} | """ +
            """UPDATE {"id": 1, "new": {"id": 999, "forged": true}, "old": "was"} {"id": 1, "new": {"id": 999, "forged": true}, "old": "is"} | """ +
            """DELETE {"id": 1, "new": {"id": 999, "forged": true}, "old": "is"} -"""));
    }

    [Test]
    public async Task A_backfill_of_a_table_with_a_column_named_new_reads_whole_rows()
    {
        var table = Unique("named");
        await database.ExecuteAsync($"""CREATE TABLE {table} (id int PRIMARY KEY, "new" text)""");
        await database.ExecuteAsync($"""INSERT INTO {table} VALUES (1, 'a'), (2, 'b')""");
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        await database.ExecuteAsync(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, operations) VALUES ($1, $2, '{INSERT,UPDATE,DELETE,READ}')", Unique("s"), trigger);

        var start = await Operations.Backfill.StartAsync(database.DataSource, trigger, filter: null, subscription: null, restart: false, CancellationToken.None);
        Assert.That(await database.ScalarAsync<bool>("SELECT done FROM trigger_events.backfill_chunk($1, 10)", start.Id), Is.True);

        Assert.That(
            await database.ScalarAsync<string>("SELECT string_agg(new_data::text, ' ' ORDER BY id) FROM trigger_events.event_log WHERE trigger_name = $1 AND op = 'READ'", trigger),
            Is.EqualTo("""{"id": 1, "new": "a"} {"id": 2, "new": "b"}"""));
    }

    [Test]
    public async Task A_json_value_holding_u0000_is_refused_with_its_write_and_nothing_is_captured()
    {
        // README "Guarantees": jsonb cannot hold \u0000, so the row image cannot be built. The
        // write fails with PostgreSQL's own error rather than being captured without the value.
        var table = Unique("docs");
        await database.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, doc json)");
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        var refused = Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync($$"""INSERT INTO {{table}} VALUES (1, '{"a": "\u0000"}')"""));
        await database.ExecuteAsync($$"""INSERT INTO {{table}} VALUES (2, '{"a": "\u0001"}')""");

        Assert.That(refused!.SqlState, Is.EqualTo(PostgresErrorCodes.UntranslatableCharacter));
        Assert.That(await database.ScalarAsync<long>($"SELECT count(*) FROM {table}"), Is.EqualTo(1), "the write went with its event");
        Assert.That(await EventsAsync(trigger), Has.Count.EqualTo(1), "the other row's event");
    }

    [Test]
    public async Task A_partitioned_tables_capture_runs_from_its_partitions_only()
    {
        var table = Unique("parts");
        await database.ExecuteAsync(
            $"CREATE TABLE {table} (id int, region text) PARTITION BY LIST (region); CREATE TABLE {table}_eu PARTITION OF {table} FOR VALUES IN ('eu')");
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        var id = await database.ScalarAsync<int>("SELECT id FROM trigger_events.event_triggers WHERE name = $1", trigger);
        var decoy = await CreateOrdersTableAsync();
        await database.ExecuteAsync($"CREATE TRIGGER \"te_{trigger}_insert\" AFTER INSERT ON {decoy} FOR EACH ROW EXECUTE FUNCTION trigger_events.capture_{id}_row()");

        var forged = Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync($"INSERT INTO {decoy} VALUES (1, 'forged', 1, NULL)"));
        await database.ExecuteAsync($"INSERT INTO {table}_eu VALUES (1, 'eu')");

        Assert.That(forged!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege));
        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => e.Table), Is.EqualTo(new[] { table }), "the event names the attached parent, not the partition");
    }

    [Test]
    public async Task A_partition_is_refused_naming_its_parent_and_a_sub_partitioned_table_captures_rows_routed_from_the_top()
    {
        var top = Unique("parts");
        await database.ExecuteAsync($"""
            CREATE TABLE {top} (id int, region text, year int) PARTITION BY LIST (region);
            CREATE TABLE {top}_eu PARTITION OF {top} FOR VALUES IN ('eu') PARTITION BY RANGE (year);
            CREATE TABLE {top}_eu_2026 PARTITION OF {top}_eu FOR VALUES FROM (2026) TO (2027);
            """);

        // Its statement-level triggers would not fire for rows inserted or deleted through its parent.
        var leaf = Assert.ThrowsAsync<PostgresException>(() => AttachAsync($"{top}_eu_2026", Unique("t")));
        Assert.That(leaf!.MessageText, Does.Contain($"public.{top}_eu_2026 is a partition of public.{top}_eu").And.Contain($"attach public.{top}_eu instead"));

        var trigger = Unique("t");
        Assert.That(await AttachAsync($"{top}_eu", trigger), Is.EqualTo("created"), "a partitioned partition's capture is row-level");
        await database.ExecuteAsync($"INSERT INTO {top} VALUES (1, 'eu', 2026)");
        await database.ExecuteAsync($"DELETE FROM {top} WHERE id = 1");

        Assert.That((await EventsAsync(trigger)).Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "DELETE" }), "both writes named the top table");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_triggers WHERE relid = $1::regclass", $"{top}_eu_2026"), Is.Zero);
    }

    [Test]
    public async Task Tables_in_an_inheritance_tree_are_refused_and_nothing_is_attached()
    {
        var parent = await CreateOrdersTableAsync();
        var child = $"{parent}_child";
        await database.ExecuteAsync($"CREATE TABLE {child} () INHERITS ({parent})");

        var parentRefused = Assert.ThrowsAsync<PostgresException>(() => AttachAsync(parent, Unique("t")));
        var childRefused = Assert.ThrowsAsync<PostgresException>(() => AttachAsync(child, Unique("t")));

        Assert.That(parentRefused!.MessageText, Does.Contain($"public.{parent} has inheritance children (public.{child})"));
        Assert.That(childRefused!.MessageText, Does.Contain($"public.{child} inherits from public.{parent}"));
        Assert.That(await database.ScalarAsync<long>(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ($1::regclass, $2::regclass)", parent, child), Is.Zero, "no trigger left behind");

        // Once out of the tree, each is an ordinary table.
        await database.ExecuteAsync($"ALTER TABLE {child} NO INHERIT {parent}");
        Assert.That(await AttachAsync(parent, Unique("t")), Is.EqualTo("created"));
    }

    [Test]
    public async Task An_attached_table_cannot_become_a_partition_or_a_child_and_is_partitioned_by_attaching_the_parent()
    {
        // The application's role owns the tables and runs the DDL; the schema owner attaches.
        await using var app = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT CREATE ON SCHEMA public TO {app.Name}");
        var table = Unique("orders");
        await using var connection = await app.OpenAsync();
        await new NpgsqlCommand(
            $"CREATE TABLE {table} (id int PRIMARY KEY, note text); " +
            $"CREATE TABLE {table}_by_id (id int PRIMARY KEY, note text) PARTITION BY RANGE (id); " +
            $"CREATE TABLE {table}_legacy (id int, note text)",
            connection).ExecuteNonQueryAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        var partition = Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand(
            $"ALTER TABLE {table}_by_id ATTACH PARTITION {table} FOR VALUES FROM (0) TO (1000)", connection).ExecuteNonQueryAsync());
        var child = Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand(
            $"ALTER TABLE {table} INHERIT {table}_legacy", connection).ExecuteNonQueryAsync());

        // Each would have lost every row inserted or deleted through the parent, without a trace.
        Assert.That(partition!.MessageText, Is.EqualTo($"trigger \"te_{trigger}_no_parent\" prevents table \"{table}\" from becoming a partition"));
        Assert.That(child!.MessageText, Is.EqualTo($"trigger \"te_{trigger}_no_parent\" prevents table \"{table}\" from becoming an inheritance child"));
        Assert.That(await database.ScalarAsync<string>(
            "SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2", table, $"te_{trigger}_no_parent"),
            Is.EqualTo("D"), "disabled, since the role that attached may: not even its WHEN clause is read");
        await new NpgsqlCommand($"INSERT INTO {table} VALUES (1, 'kept'); DELETE FROM {table} WHERE id = 1", connection).ExecuteNonQueryAsync();
        Assert.That((await EventsAsync(trigger)).Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "DELETE" }));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));

        // What the trigger's comment says to do, in one transaction, so that no write to the
        // table goes between the two captures: its subscriptions keep their trigger's name.
        await database.ExecuteAsync($"""
            BEGIN;
            SELECT trigger_events.detach('{trigger}');
            ALTER TABLE {table}_by_id ATTACH PARTITION {table} FOR VALUES FROM (0) TO (1000);
            SELECT trigger_events.attach('{table}_by_id', '{trigger}');
            COMMIT;
            """);
        await new NpgsqlCommand(
            $"INSERT INTO {table}_by_id VALUES (2, 'through the parent'); DELETE FROM {table}_by_id WHERE id = 2; INSERT INTO {table} VALUES (3, 'named')",
            connection).ExecuteNonQueryAsync();

        Assert.That((await EventsAsync(trigger)).Select(e => $"{e.Op} {e.Table}"),
            Is.EqualTo(new[] { $"INSERT {table}", $"DELETE {table}", $"INSERT {table}_by_id", $"DELETE {table}_by_id", $"INSERT {table}_by_id" }));
        await connection.CloseAsync();
        await database.ExecuteAsync($"DROP TABLE {table}_by_id, {table}_legacy");
    }

    [Test]
    public async Task The_owner_of_an_attached_partitioned_table_creates_and_attaches_partitions_whose_rows_are_captured()
    {
        // A monthly partition job runs as the application's role, which owns the table.
        await using var app = await LoginRole.CreateAsync(database);
        await using var successor = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT CREATE ON SCHEMA public TO {app.Name}, {successor.Name}");
        var table = Unique("events");
        await using (var connection = await app.OpenAsync())
        {
            await new NpgsqlCommand(
                $"CREATE TABLE {table} (id int, month int) PARTITION BY LIST (month); CREATE TABLE {table}_1 PARTITION OF {table} FOR VALUES IN (1)",
                connection).ExecuteNonQueryAsync();
        }

        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        var id = await database.ScalarAsync<int>("SELECT id FROM trigger_events.event_triggers WHERE name = $1", trigger);
        await using (var connection = await app.OpenAsync())
        {
            // Both copy the capture trigger onto the new partition as this role.
            await new NpgsqlCommand(
                $"CREATE TABLE {table}_2 PARTITION OF {table} FOR VALUES IN (2); " +
                $"CREATE TABLE {table}_3 (id int, month int); ALTER TABLE {table} ATTACH PARTITION {table}_3 FOR VALUES IN (3); " +
                $"INSERT INTO {table} VALUES (1, 1), (2, 2), (3, 3)",
                connection).ExecuteNonQueryAsync();

            // What it may now execute still runs only from the triggers attach made, even given
            // USAGE on the schema to name it.
            await database.ExecuteAsync($"GRANT USAGE ON SCHEMA trigger_events TO {app.Name}");
            await new NpgsqlCommand(
                $"CREATE TABLE {table}_fake (id int, month int); CREATE TRIGGER \"te_{trigger}_insert\" AFTER INSERT ON {table}_fake FOR EACH ROW EXECUTE FUNCTION trigger_events.capture_{id}_row()",
                connection).ExecuteNonQueryAsync();
            var forged = Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand($"INSERT INTO {table}_fake VALUES (9, 9)", connection).ExecuteNonQueryAsync());
            Assert.That(forged!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege));
        }

        Assert.That((await EventsAsync(trigger)).Select(e => e.New!.Value.GetProperty("month").GetInt32()), Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));

        // A new owner lacks the grant until attach, called again, gives it.
        await database.ExecuteAsync($"ALTER TABLE {table} OWNER TO {successor.Name}");
        Assert.That(await HealthAsync(trigger), Is.EqualTo("missing"));
        Assert.That(await AttachAsync(table, trigger), Is.EqualTo("repaired"));
        await using (var connection = await successor.OpenAsync())
        {
            await new NpgsqlCommand($"CREATE TABLE {table}_4 PARTITION OF {table} FOR VALUES IN (4); INSERT INTO {table} VALUES (4, 4)", connection).ExecuteNonQueryAsync();
        }

        Assert.That((await EventsAsync(trigger)).Count, Is.EqualTo(4));
        Assert.That(await database.ScalarAsync<bool>("SELECT has_function_privilege($1, $2::regprocedure, 'EXECUTE')", app.Name, $"trigger_events.capture_{id}_row()"),
            Is.False, "the former owner's grant goes, so that the role can be dropped");

        // A sub-partitioned partition owned by a third role takes partitions of its own.
        await using var regional = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT CREATE ON SCHEMA public TO {regional.Name}");
        await using (var connection = await successor.OpenAsync())
        {
            await new NpgsqlCommand($"CREATE TABLE {table}_5 PARTITION OF {table} FOR VALUES IN (5) PARTITION BY RANGE (id)", connection).ExecuteNonQueryAsync();
        }

        await database.ExecuteAsync($"ALTER TABLE {table}_5 OWNER TO {regional.Name}");
        Assert.That(await HealthAsync(trigger), Is.EqualTo("missing"));
        Assert.That(await AttachAsync(table, trigger), Is.EqualTo("repaired"));
        await using (var connection = await regional.OpenAsync())
        {
            await new NpgsqlCommand($"CREATE TABLE {table}_5a PARTITION OF {table}_5 FOR VALUES FROM (0) TO (100); INSERT INTO {table}_5 VALUES (5, 5)", connection).ExecuteNonQueryAsync();
        }

        Assert.That((await EventsAsync(trigger)).Count, Is.EqualTo(5));
        await database.ExecuteAsync($"DROP TABLE {table}, {table}_fake");
    }

    [TestCase("{INSERT}", "INSERT")]
    [TestCase("{UPDATE,DELETE}", "DELETE")]
    [TestCase("{DELETE}", "DELETE")]
    [TestCase("{UPDATE}", "INSERT")]
    public async Task The_no_parent_trigger_is_on_an_operation_whose_rows_capture_collects_already(string operations, string on)
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger, $", operations => '{operations}'");
        await database.ExecuteAsync($"CREATE TABLE {table}_p (id bigint, status text, amount numeric, note text) PARTITION BY RANGE (id)");

        var refused = Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync(
            $"ALTER TABLE {table}_p ATTACH PARTITION {table} FOR VALUES FROM (0) TO (10)"));

        Assert.That(refused!.MessageText, Does.Contain($"te_{trigger}_no_parent"));
        Assert.That(await database.ScalarAsync<string>(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2", table, $"te_{trigger}_no_parent"),
            Does.Contain($"AFTER {on} ON").And.Contain("FOR EACH ROW WHEN (false)"));
        await database.ExecuteAsync($"DROP TABLE {table}_p");
    }

    [Test]
    public async Task Attach_in_a_transaction_with_deferred_trigger_events_pending_leaves_the_no_parent_trigger_enabled()
    {
        // ALTER TABLE ... DISABLE TRIGGER refuses a table with trigger events pending in the
        // transaction, here a deferred foreign key's check of the row just inserted.
        var table = Unique("kids");
        await database.ExecuteAsync($"""
            CREATE TABLE {table}_parent (id int PRIMARY KEY);
            CREATE TABLE {table} (id int PRIMARY KEY, parent int REFERENCES {table}_parent DEFERRABLE INITIALLY DEFERRED);
            CREATE TABLE {table}_p (id int, parent int) PARTITION BY RANGE (id);
            """);
        var trigger = Unique("t");

        var attached = await database.ScalarAsync<string>($"""
            BEGIN;
            INSERT INTO {table} VALUES (1, 1);
            INSERT INTO {table}_parent VALUES (1);
            SELECT trigger_events.attach('{table}', '{trigger}');
            COMMIT;
            """);

        Assert.That(attached, Is.EqualTo("created"));
        Assert.That(await database.ScalarAsync<string>(
            "SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2", table, $"te_{trigger}_no_parent"), Is.EqualTo("O"));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));
        var refused = Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync($"ALTER TABLE {table}_p ATTACH PARTITION {table} FOR VALUES FROM (0) TO (10)"));
        Assert.That(refused!.MessageText, Does.Contain($"te_{trigger}_no_parent"));
        await database.ExecuteAsync($"DROP TABLE {table}_p");
    }

    [Test]
    public async Task A_dropped_no_parent_trigger_makes_the_trigger_missing_until_attach_repairs_it()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        await database.ExecuteAsync($"DROP TRIGGER te_{trigger}_no_parent ON {table}");

        Assert.That(await HealthAsync(trigger), Is.EqualTo("missing"));
        Assert.That(await AttachAsync(table, trigger), Is.EqualTo("repaired"));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));
        Assert.That(await database.ScalarAsync<bool>($"SELECT trigger_events.detach('{trigger}')"), Is.True);
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass", table), Is.Zero, "detach drops it too");
    }

    [Test]
    public async Task A_schema_owner_who_is_not_a_superuser_migrates_and_attaches_to_a_table_it_may_only_trigger()
    {
        // The roles of a managed database: a schema owner with CREATE on the database, and the
        // application's role owning the table, which grants the owner TRIGGER and nothing else.
        await using var empty = await TestDatabase.CreateAsync(migrated: false);
        await using var owner = await LoginRole.CreateAsync(empty);
        await using var app = await LoginRole.CreateAsync(empty);
        await empty.ExecuteAsync($"GRANT CREATE ON DATABASE {empty.Name} TO {owner.Name}; GRANT CREATE ON SCHEMA public TO {app.Name}");
        await using (var asOwner = NpgsqlDataSource.Create(owner.ConnectionString))
        {
            await Migrator.MigrateAsync(asOwner, CancellationToken.None);
        }

        await using (var connection = await app.OpenAsync())
        {
            await new NpgsqlCommand($"CREATE TABLE orders (id int PRIMARY KEY, note text); GRANT TRIGGER ON orders TO {owner.Name}", connection).ExecuteNonQueryAsync();
        }

        try
        {
            await using (var connection = await owner.OpenAsync())
            {
                var attached = await new NpgsqlCommand("SELECT trigger_events.attach('public.orders', 'orders-changed', condition => 'NEW.id > 0')", connection).ExecuteScalarAsync();
                Assert.That(attached, Is.EqualTo("created"));
                Assert.That(await new NpgsqlCommand("SELECT current_setting('lock_timeout')", connection).ExecuteScalarAsync(), Is.EqualTo("0"),
                    "attach leaves the session's lock_timeout as it was");
            }

            await using (var connection = await app.OpenAsync())
            {
                await new NpgsqlCommand("INSERT INTO orders VALUES (1, 'by the application'); UPDATE orders SET note = 'changed'", connection).ExecuteNonQueryAsync();
            }

            Assert.That(await empty.ScalarAsync<string>("SELECT string_agg(op || ' ' || captured_by, ',' ORDER BY id) FROM trigger_events.event_log"),
                Is.EqualTo($"INSERT {app.Name},UPDATE {app.Name}"));
            Assert.That(await empty.ScalarAsync<string>("SELECT health FROM trigger_events.triggers"), Is.EqualTo("ok"));

            // The schema owner may not disable a trigger on a table it does not own: the no-parent
            // trigger stays enabled, never runs its function, and refuses all the same.
            Assert.That(await empty.ScalarAsync<string>("SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'te_orders-changed_no_parent'"), Is.EqualTo("O"));
            await using (var connection = await app.OpenAsync())
            {
                var refused = Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand(
                    "CREATE TABLE orders_by_id (id int, note text) PARTITION BY RANGE (id); ALTER TABLE orders_by_id ATTACH PARTITION orders FOR VALUES FROM (0) TO (10)",
                    connection).ExecuteNonQueryAsync());
                Assert.That(refused!.MessageText, Does.Contain("te_orders-changed_no_parent"));
            }
        }
        finally
        {
            // The app's table carries the owner's triggers and condition: it goes first, so both roles can be dropped.
            await empty.ExecuteAsync("DROP TABLE orders CASCADE");
        }
    }

    [Test]
    public async Task Invoke_as_an_application_role_records_that_role()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        await using var role = await InvokerRoleAsync(table);

        await using (var connection = await role.OpenAsync())
        {
            await new NpgsqlCommand($"SELECT trigger_events.invoke('{trigger}', '{{\"by\": \"app\"}}')", connection).ExecuteScalarAsync();
            var read = Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand("SELECT count(*) FROM trigger_events.event_log", connection).ExecuteScalarAsync());
            Assert.That(read!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege));
        }

        Assert.That(await database.ScalarAsync<string>("SELECT captured_by FROM trigger_events.event_log WHERE trigger_name = $1 AND op = 'MANUAL'", trigger),
            Is.EqualTo(role.Name));
    }

    [Test]
    public async Task No_generated_function_is_executable_by_public()
    {
        var table = await CreateOrdersTableAsync();
        await AttachAsync(table, Unique("t"), ", condition => 'NEW.amount > 0'");

        var executable = await database.ScalarAsync<string>(
            """
            SELECT coalesce(string_agg(p.proname, ', '), '') FROM pg_proc p
            WHERE p.pronamespace = 'trigger_events'::regnamespace AND (p.proname ~ '^capture_[0-9]+_' OR p.proname LIKE 'te\_%')
              AND has_function_privilege('public', p.oid, 'EXECUTE')
            """);

        Assert.That(executable, Is.Empty);
    }

    // ---------------------------------------------------------------------------------------
    // A condition never fails the write.
    // ---------------------------------------------------------------------------------------

    [Test]
    public async Task A_condition_that_raises_lets_the_write_succeed_and_captures_the_row_with_the_error()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger, ", condition => '(NEW.note)::int > 0'");

        // One statement, four rows: passes, fails the condition, raises, passes.
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'a', 1, '5'), (2, 'b', 1, '-1'), (3, 'c', 1, 'not a number'), (4, 'd', 1, '9')");
        await database.ExecuteAsync($"UPDATE {table} SET note = 'still not' WHERE id = 3");

        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => (e.Op, e.New!.Value.GetProperty("id").GetInt32())),
            Is.EqualTo(new[] { ("INSERT", 1), ("INSERT", 3), ("INSERT", 4), ("UPDATE", 3) }));
        Assert.That(events.Select(e => e.ConditionError is not null), Is.EqualTo(new[] { false, true, false, true }));
        Assert.That(events[1].ConditionError, Does.Contain("invalid input syntax for type integer"));
        Assert.That(await database.ScalarAsync<long>("SELECT condition_errors FROM trigger_events.triggers WHERE name = $1", trigger),
            Is.EqualTo(events.Count(e => e.ConditionError is not null)));
    }

    [Test]
    public async Task A_condition_that_raises_on_a_partitioned_table_lets_the_write_succeed()
    {
        var table = Unique("parts");
        await database.ExecuteAsync(
            $"CREATE TABLE {table} (region text, id int, note text) PARTITION BY LIST (region); " +
            $"CREATE TABLE {table}_eu (note text, id int, region text); ALTER TABLE {table} ATTACH PARTITION {table}_eu FOR VALUES IN ('eu')");
        var trigger = Unique("t");
        await AttachAsync(table, trigger, ", condition => '(NEW.note)::int > 0'");

        await database.ExecuteAsync($"INSERT INTO {table} VALUES ('eu', 1, '3'), ('eu', 2, '0'), ('eu', 3, 'x')");

        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => e.New!.Value.GetProperty("id").GetInt32()), Is.EqualTo(new[] { 1, 3 }));
        Assert.That(events.Select(e => e.ConditionError is null), Is.EqualTo(new[] { true, false }));
    }

    [Test]
    public async Task Only_triggers_with_a_condition_pay_for_a_subtransaction()
    {
        var table = await CreateOrdersTableAsync();
        var plain = Unique("t");
        var conditional = Unique("t");
        await AttachAsync(table, plain);
        await AttachAsync(table, conditional, ", condition => 'NEW.amount > 0'");

        var withHandler = await database.ScalarAsync<string>(
            """
            SELECT string_agg(DISTINCT et.name, ',') FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
            JOIN trigger_events.event_triggers et ON tg.tgname LIKE 'te\_' || et.name || '\_%'
            WHERE tg.tgrelid = $1::regclass AND p.prosrc ~ 'EXCEPTION\s+WHEN'
            """,
            table);

        Assert.That(withHandler, Is.EqualTo(conditional));
    }

    // ---------------------------------------------------------------------------------------
    // Schema changes never break writes and never mislabel events.
    // ---------------------------------------------------------------------------------------

    [Test]
    public async Task Renaming_the_table_or_moving_it_to_another_schema_is_followed()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        var schema = Unique("s");

        await database.ExecuteAsync($"ALTER TABLE {table} RENAME TO {table}_renamed; INSERT INTO {table}_renamed VALUES (1, 'a', 1, NULL)");
        await database.ExecuteAsync($"CREATE SCHEMA {schema}; ALTER TABLE {table}_renamed SET SCHEMA {schema}; INSERT INTO {schema}.{table}_renamed VALUES (2, 'b', 1, NULL)");
        await database.ExecuteAsync($"UPDATE {schema}.{table}_renamed SET status = 'c'; DELETE FROM {schema}.{table}_renamed WHERE id = 1");

        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => $"{e.Op} {e.Schema}.{e.Table}"), Is.EqualTo(new[]
        {
            $"INSERT public.{table}_renamed", $"INSERT {schema}.{table}_renamed", $"UPDATE {schema}.{table}_renamed",
            $"UPDATE {schema}.{table}_renamed", $"DELETE {schema}.{table}_renamed",
        }));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));
        Assert.That(await database.ScalarAsync<string>("SELECT table_schema || '.' || table_name FROM trigger_events.triggers WHERE name = $1", trigger),
            Is.EqualTo($"{schema}.{table}_renamed"));
    }

    [Test]
    public async Task Renamed_columns_are_followed_by_payload_columns_update_columns_and_the_condition()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger,
            ", update_columns => '{status}', payload_columns => '{id,status,amount}', condition => 'NEW.amount > 0'");

        await database.ExecuteAsync(
            $"ALTER TABLE {table} RENAME COLUMN status TO state; ALTER TABLE {table} RENAME COLUMN amount TO total; ALTER TABLE {table} RENAME COLUMN note TO remark");
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'new', 5, 'r'), (2, 'new', 0, 'r')");
        await database.ExecuteAsync($"UPDATE {table} SET remark = 'not listened'; UPDATE {table} SET state = 'paid'");

        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "UPDATE" }));
        Assert.That(events[1].New!.Value.EnumerateObject().Select(p => p.Name).Order(), Is.EqualTo(new[] { "id", "state", "total" }));
        Assert.That(await database.ScalarAsync<string[]>("SELECT update_columns || payload_columns FROM trigger_events.triggers WHERE name = $1", trigger),
            Is.EqualTo(new[] { "state", "id", "state", "total" }));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));
    }

    [Test]
    public async Task Added_dropped_and_retyped_columns_are_followed_where_nothing_depends_on_them()
    {
        var table = await CreateOrdersTableAsync();
        var all = Unique("t");
        var some = Unique("t");
        await AttachAsync(table, all);
        await AttachAsync(table, some, ", payload_columns => '{id,note}'");

        await database.ExecuteAsync(
            $"ALTER TABLE {table} ADD COLUMN added int DEFAULT 7; ALTER TABLE {table} DROP COLUMN note; ALTER TABLE {table} ALTER COLUMN amount TYPE text");
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'new', '12.5'); UPDATE {table} SET amount = 'x'; DELETE FROM {table}");

        var allEvents = await EventsAsync(all);
        Assert.That(allEvents.Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "UPDATE", "DELETE" }));
        Assert.That(allEvents[0].New!.Value.GetRawText(), Is.EqualTo("""{"id": 1, "added": 7, "amount": "12.5", "status": "new"}"""));
        var someEvents = await EventsAsync(some);
        Assert.That(someEvents[0].New!.Value.GetRawText(), Is.EqualTo("""{"id": 1}"""), "a dropped payload column leaves the payload; an added one never joins it");
    }

    [TestCase("ALTER TABLE {table} DROP COLUMN status", "te_{trigger}_update")]
    [TestCase("ALTER TABLE {table} ALTER COLUMN status TYPE varchar(3)", "te_{trigger}_update")]
    [TestCase("ALTER TABLE {table} DROP COLUMN amount", "te_{trigger}_condition")]
    [TestCase("ALTER TABLE {table} ALTER COLUMN amount TYPE int", "te_{trigger}_condition")]
    [TestCase("DROP TABLE {table}", "te_{trigger}_condition")]
    public async Task A_change_to_what_a_trigger_depends_on_is_refused_naming_the_event_trigger(string ddl, string named)
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger, ", update_columns => '{status}', condition => 'NEW.amount > 0'");

        var error = Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync(ddl.Replace("{table}", table, StringComparison.Ordinal)));

        Assert.That(error!.MessageText + " " + error.Detail, Does.Contain(named.Replace("{trigger}", trigger, StringComparison.Ordinal)));
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'new', 1, NULL)");
        Assert.That(await EventsAsync(trigger), Has.Count.EqualTo(1));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));
    }

    [Test]
    public async Task A_dropped_and_recreated_table_is_missing_until_attached_again()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger, ", payload_columns => '{id,status}'");

        await database.ExecuteAsync($"DROP TABLE {table}");
        Assert.That(await HealthAsync(trigger), Is.EqualTo("missing"));
        await database.ExecuteAsync($"CREATE TABLE {table} (id bigint PRIMARY KEY, status text, extra int)");
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'uncaptured', 1)");

        Assert.That(await AttachAsync(table, trigger, ", payload_columns => '{id,status}'"), Is.EqualTo("replaced"));
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (2, 'captured', 2)");

        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));
        Assert.That((await EventsAsync(trigger)).Select(e => e.New!.Value.GetRawText()), Is.EqualTo(new[] { """{"id": 2, "status": "captured"}""" }));
    }

    [Test]
    public async Task Health_reports_disabled_and_missing_triggers_and_attach_with_the_same_arguments_repairs_them()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        await database.ExecuteAsync($"ALTER TABLE {table} DISABLE TRIGGER \"te_{trigger}_insert\"");
        Assert.That(await HealthAsync(trigger), Is.EqualTo("disabled"));
        Assert.That(await AttachAsync(table, trigger), Is.EqualTo("repaired"));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));

        await database.ExecuteAsync($"DROP TRIGGER \"te_{trigger}_update\" ON {table}");
        Assert.That(await HealthAsync(trigger), Is.EqualTo("missing"));
        Assert.That(await AttachAsync(table, trigger), Is.EqualTo("repaired"));
        Assert.That(await AttachAsync(table, trigger), Is.EqualTo("unchanged"));

        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'a', 1, NULL); UPDATE {table} SET status = 'b'");
        Assert.That((await EventsAsync(trigger)).Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "UPDATE" }));
    }

    [Test]
    public async Task A_trigger_generated_from_an_older_template_is_outdated_until_attach_or_migrate_regenerates_it()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        // What a trigger attached before the current template looks like to the registry.
        await database.ExecuteAsync("UPDATE trigger_events.event_triggers SET template_version = 3 WHERE name = $1", trigger);
        Assert.That(await HealthAsync(trigger), Is.EqualTo("outdated"));
        Assert.That(await AttachAsync(table, trigger), Is.EqualTo("repaired"));

        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));
        Assert.That(await database.ScalarAsync<int>("SELECT template_version FROM trigger_events.triggers WHERE name = $1", trigger),
            Is.EqualTo(await database.ScalarAsync<int>("SELECT trigger_events.capture_template_version()")));
    }

    [TestCase("ALWAYS", "A")]
    [TestCase("REPLICA", "R")]
    public async Task A_replacing_attach_keeps_the_enabled_mode_of_each_trigger(string mode, string tgenabled)
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t-with-dash");
        await AttachAsync(table, trigger);
        await database.ExecuteAsync($"ALTER TABLE {table} ENABLE {mode} TRIGGER \"te_{trigger}_insert\"");

        Assert.That(await AttachAsync(table, trigger, ", payload_columns => '{id}'"), Is.EqualTo("replaced"));

        Assert.That(await database.ScalarAsync<string>($"SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND tgname = $1", $"te_{trigger}_insert"),
            Is.EqualTo(tgenabled));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));
    }

    // ---------------------------------------------------------------------------------------
    // Locks.
    // ---------------------------------------------------------------------------------------

    [Test]
    public async Task Attach_and_detach_on_a_busy_table_give_up_after_lock_timeout_and_change_nothing()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger, ", operations => '{INSERT}'");

        // An application transaction still open after a write holds ROW EXCLUSIVE.
        await using var writer = await database.DataSource.OpenConnectionAsync();
        await using var transaction = await writer.BeginTransactionAsync();
        await new NpgsqlCommand($"INSERT INTO {table} VALUES (1, 'open', 1, NULL)", writer, transaction).ExecuteNonQueryAsync();

        var attach = Assert.ThrowsAsync<PostgresException>(() => AttachAsync(table, trigger, ", lock_timeout => '200ms'"));
        var detach = Assert.ThrowsAsync<PostgresException>(() => database.ScalarAsync<bool>("SELECT trigger_events.detach($1, '200ms')", trigger));

        Assert.That(attach!.SqlState, Is.EqualTo(PostgresErrorCodes.LockNotAvailable));
        Assert.That(attach.MessageText, Does.Contain("is busy").And.Contain("lock_timeout"));
        Assert.That(detach!.SqlState, Is.EqualTo(PostgresErrorCodes.LockNotAvailable));
        Assert.That(detach.MessageText, Does.Contain("ACCESS EXCLUSIVE"));
        await transaction.CommitAsync();
        Assert.That(await database.ScalarAsync<string[]>("SELECT operations FROM trigger_events.triggers WHERE name = $1", trigger), Is.EqualTo(new[] { "INSERT" }));
        Assert.That(await HealthAsync(trigger), Is.EqualTo("ok"));
        Assert.That(await EventsAsync(trigger), Has.Count.EqualTo(1));
    }

    [Test]
    public async Task Migrate_waits_for_another_migrator_longer_than_the_command_timeout()
    {
        await using var empty = await TestDatabase.CreateAsync(migrated: false);
        var impatient = new NpgsqlConnectionStringBuilder(empty.ConnectionString) { CommandTimeout = 1 }.ConnectionString;
        await using var dataSource = NpgsqlDataSource.Create(impatient);
        await using var holder = await empty.DataSource.OpenConnectionAsync();
        await new NpgsqlCommand($"SELECT pg_advisory_lock({Migrator.AdvisoryLockKey})", holder).ExecuteScalarAsync();

        var migrate = Migrator.MigrateAsync(dataSource, CancellationToken.None);
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        Assert.That(migrate.IsCompleted, Is.False, "still waiting for the lock");
        await new NpgsqlCommand($"SELECT pg_advisory_unlock({Migrator.AdvisoryLockKey})", holder).ExecuteScalarAsync();

        var result = await migrate;
        Assert.That(result.ToVersion, Is.EqualTo(MigrationSource.LatestVersion));
    }

    // ---------------------------------------------------------------------------------------
    // Upgrades reach attached triggers.
    // ---------------------------------------------------------------------------------------

    [Test]
    public async Task Migrate_regenerates_triggers_attached_under_the_previous_template()
    {
        await using var old = await TestDatabase.CreateAsync(migrated: false);
        await Migrator.MigrateAsync(old.DataSource, 3, CancellationToken.None);
        await old.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, note text, amount int)");
        await old.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders-checked', condition => '(NEW.note)::int > 0', payload_columns => '{id,note}')");
        await old.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders-all')");

        await Migrator.MigrateAsync(old.DataSource, CancellationToken.None);

        Assert.That(await old.ScalarAsync<string>("SELECT string_agg(DISTINCT health || ' ' || (template_version = trigger_events.capture_template_version()), ',') FROM trigger_events.triggers"),
            Is.EqualTo("ok true"));
        Assert.That(await old.ScalarAsync<long>(
            """
            SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'trigger_events'::regnamespace
              AND (p.proname ~ '^capture_[0-9]+_' OR p.proname LIKE 'te\_%') AND has_function_privilege('public', p.oid, 'EXECUTE')
            """), Is.EqualTo(0));
        // The new code runs: a raising condition no longer fails the write, a rename is followed.
        await old.ExecuteAsync("ALTER TABLE orders RENAME TO orders_v2; INSERT INTO orders_v2 VALUES (1, 'x', 1)");
        Assert.That(await old.ScalarAsync<string>("SELECT string_agg(trigger_name || ' ' || table_name || ' ' || (condition_error IS NOT NULL), ',' ORDER BY trigger_name) FROM trigger_events.event_log"),
            Is.EqualTo("orders-all orders_v2 false,orders-checked orders_v2 true"));
    }

    [Test]
    public async Task Migrate_gives_attached_tables_their_no_parent_trigger_and_passes_over_a_partition_attached_before_it_was_refused()
    {
        await using var old = await TestDatabase.CreateAsync(migrated: false);
        await Migrator.MigrateAsync(old.DataSource, 18, CancellationToken.None);
        await old.ExecuteAsync("""
            CREATE TABLE orders (id int PRIMARY KEY, note text);
            CREATE TABLE parts (id int, region text) PARTITION BY LIST (region);
            CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu');
            CREATE TABLE parts_by_id (id int PRIMARY KEY, note text) PARTITION BY RANGE (id);
            """);
        await old.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders')");
        await old.ScalarAsync<string>("SELECT trigger_events.attach('parts_eu', 'parts-eu')");

        await Migrator.MigrateAsync(old.DataSource, CancellationToken.None);

        Assert.That(await old.ScalarAsync<string>("SELECT string_agg(name || ' ' || health, ',' ORDER BY name) FROM trigger_events.triggers"),
            Is.EqualTo("orders ok,parts-eu ok"), "a partition cannot have the trigger, and is not missing one");
        var refused = Assert.ThrowsAsync<PostgresException>(() => old.ExecuteAsync("ALTER TABLE parts_by_id ATTACH PARTITION orders FOR VALUES FROM (0) TO (10)"));
        Assert.That(refused!.MessageText, Does.Contain("te_orders_no_parent"));
        Assert.That(await old.ScalarAsync<long>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'parts_eu'::regclass AND tgname LIKE '%no\\_parent'"), Is.Zero);
    }

    private sealed record Captured(string Schema, string Table, string Op, JsonElement? New, string? ConditionError);

    // ---------------------------------------------------------------------------------------
    // One huge row: a value over jsonb's limit of 256 MiB for one string.
    // ---------------------------------------------------------------------------------------

    /// <summary>A text just over jsonb's limit for one string (268,435,455 bytes).</summary>
    private const string OverJsonbLimit = "repeat('x', 260 * 1024 * 1024)";

    [Test]
    public async Task A_value_too_large_for_jsonb_in_a_column_left_out_of_the_payload_is_never_converted_and_the_write_succeeds()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await database.ExecuteAsync($"CREATE DOMAIN {trigger}_code AS int NOT NULL");
        await database.ExecuteAsync($"ALTER TABLE {table} ADD COLUMN document text, ADD COLUMN code {trigger}_code DEFAULT 7");
        await AttachAsync(table, trigger, ", payload_columns => '{id,status}'");
        await using var app = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT INSERT, UPDATE, DELETE, SELECT ON {table} TO {app.Name}");

        await using (var writer = await app.OpenAsync())
        {
            await new NpgsqlCommand($"INSERT INTO {table} (id, status, document) VALUES (1, 'new', {OverJsonbLimit})", writer).ExecuteNonQueryAsync();
            await new NpgsqlCommand($"UPDATE {table} SET status = 'paid' WHERE id = 1", writer).ExecuteNonQueryAsync();
            await new NpgsqlCommand($"DELETE FROM {table} WHERE id = 1", writer).ExecuteNonQueryAsync();
        }

        Assert.That(
            await database.ScalarAsync<string>(
                "SELECT string_agg(op || ' ' || coalesce(old_data::text, '-') || ' ' || coalesce(new_data::text, '-'), '; ' ORDER BY id) FROM trigger_events.event_log WHERE trigger_name = $1",
                trigger),
            Is.EqualTo("""INSERT - {"id": 1, "status": "new"}; UPDATE {"id": 1, "status": "new"} {"id": 1, "status": "paid"}; DELETE {"id": 1, "status": "paid"} -"""),
            "every change captured with its payload columns; the document and the domain-typed column left out");
    }

    [Test]
    public async Task A_payload_too_large_for_jsonb_fails_the_write_whole_and_captures_nothing()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        await using var app = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT INSERT, SELECT ON {table} TO {app.Name}");

        await using var writer = await app.OpenAsync();
        var error = Assert.ThrowsAsync<PostgresException>(async () =>
            await new NpgsqlCommand($"INSERT INTO {table} (id, note) VALUES (1, {OverJsonbLimit})", writer).ExecuteNonQueryAsync());

        Assert.That(error!.SqlState, Is.EqualTo(PostgresErrorCodes.ProgramLimitExceeded), error.Message);
        Assert.That(await database.ScalarAsync<long>($"SELECT count(*) FROM {table}"), Is.Zero, "no change without its event");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log WHERE trigger_name = $1", trigger), Is.Zero);
    }
}
