using System.Text.Json;
using Npgsql;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>Capture semantics of SPEC.md "Database objects", against a real PostgreSQL.</summary>
public sealed class CaptureTests
{
    private TestDatabase database = null!;

    [OneTimeSetUp]
    public async Task CreateDatabase() => database = await TestDatabase.CreateAsync();

    [OneTimeTearDown]
    public async Task DropDatabase() => await database.DisposeAsync();

    private static string Unique(string prefix) => $"{prefix}_{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    private async Task<string> CreateOrdersTableAsync(string? name = null)
    {
        name ??= Unique("orders");
        await database.ExecuteAsync($"CREATE TABLE {name} (id bigint PRIMARY KEY, status text, amount numeric, note text)");
        return name;
    }

    private Task<string> AttachAsync(string table, string trigger, string extra = "") =>
        database.ScalarAsync<string>($"SELECT trigger_events.attach('{table}', '{trigger}'{extra})");

    private async Task<List<CapturedEvent>> EventsAsync(string trigger)
    {
        await using var command = database.DataSource.CreateCommand(
            "SELECT id, schema_name, table_name, op, old_data::text, new_data::text, session_variables::text, traceparent " +
            "FROM trigger_events.event_log WHERE trigger_name = $1 ORDER BY id");
        command.Parameters.Add(new NpgsqlParameter { Value = trigger });
        await using var reader = await command.ExecuteReaderAsync();
        var events = new List<CapturedEvent>();
        while (await reader.ReadAsync())
        {
            events.Add(new CapturedEvent(
                reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3),
                Json(reader, 4), Json(reader, 5), Json(reader, 6), reader.IsDBNull(7) ? null : reader.GetString(7)));
        }

        return events;

        static JsonElement? Json(NpgsqlDataReader reader, int ordinal) =>
            reader.IsDBNull(ordinal) ? null : JsonDocument.Parse(reader.GetString(ordinal)).RootElement.Clone();
    }

    [Test]
    public async Task Insert_update_and_delete_on_a_plain_table_are_captured_with_old_and_new_rows()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        Assert.That(await AttachAsync(table, trigger), Is.EqualTo("created"));

        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'new', 10, NULL), (2, 'new', 20, NULL)");
        await database.ExecuteAsync($"UPDATE {table} SET status = 'paid' WHERE id = 1");
        await database.ExecuteAsync($"DELETE FROM {table} WHERE id = 2");

        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "INSERT", "UPDATE", "DELETE" }));
        Assert.That(events.Select(e => (e.Schema, e.Table)).Distinct(), Is.EqualTo(new[] { ("public", table) }));
        Assert.That(events[0].Old, Is.Null);
        Assert.That(events[0].New!.Value.GetProperty("status").GetString(), Is.EqualTo("new"));
        Assert.That(events[2].Old!.Value.GetProperty("status").GetString(), Is.EqualTo("new"));
        Assert.That(events[2].New!.Value.GetProperty("status").GetString(), Is.EqualTo("paid"));
        Assert.That(events[3].Old!.Value.GetProperty("id").GetInt64(), Is.EqualTo(2));
        Assert.That(events[3].New, Is.Null);
    }

    [Test]
    public async Task Partitioned_tables_capture_writes_through_the_parent_a_partition_and_a_later_partition()
    {
        var table = Unique("parted");
        await database.ExecuteAsync($"CREATE TABLE {table} (id int, s text) PARTITION BY RANGE (id)");
        await database.ExecuteAsync($"CREATE TABLE {table}_a PARTITION OF {table} FOR VALUES FROM (0) TO (100)");
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        await database.ExecuteAsync($"CREATE TABLE {table}_b PARTITION OF {table} FOR VALUES FROM (100) TO (200)");

        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'via parent')");
        await database.ExecuteAsync($"INSERT INTO {table}_a VALUES (2, 'via partition')");
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (150, 'later partition')");
        await database.ExecuteAsync($"UPDATE {table} SET s = 'changed' WHERE id = 1");
        await database.ExecuteAsync($"DELETE FROM {table}_a WHERE id = 2");

        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "INSERT", "INSERT", "UPDATE", "DELETE" }));
        Assert.That(events.Select(e => e.Table).Distinct(), Is.EqualTo(new[] { table }), "events name the attached table, not the partition");
        Assert.That(events[2].New!.Value.GetProperty("s").GetString(), Is.EqualTo("later partition"));
    }

    [Test]
    public async Task Rolled_back_transaction_captures_nothing()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        await using (var connection = await database.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (1, 'new', 1, NULL)", connection, transaction).ExecuteNonQueryAsync();
            await transaction.RollbackAsync();
        }

        Assert.That(await EventsAsync(trigger), Is.Empty);
    }

    [Test]
    public async Task Rolled_back_savepoint_captures_nothing_while_the_rest_of_the_transaction_is_captured()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        await using (var connection = await database.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (1, 'kept', 1, NULL)", connection, transaction).ExecuteNonQueryAsync();
            await transaction.SaveAsync("before_second_row");
            await new NpgsqlCommand($"INSERT INTO {table} VALUES (2, 'rolled back', 1, NULL)", connection, transaction).ExecuteNonQueryAsync();
            await new NpgsqlCommand($"UPDATE {table} SET status = 'rolled back' WHERE id = 1", connection, transaction).ExecuteNonQueryAsync();
            await transaction.RollbackAsync("before_second_row");
            await transaction.CommitAsync();
        }

        var events = await EventsAsync(trigger);
        Assert.That(events, Has.Count.EqualTo(1));
        Assert.That(events[0].New!.Value.GetProperty("status").GetString(), Is.EqualTo("kept"));
    }

    [Test]
    public async Task Update_that_changes_no_listened_column_captures_nothing()
    {
        var table = await CreateOrdersTableAsync();
        var listening = Unique("t");
        var anyColumn = Unique("t");
        await AttachAsync(table, listening, ", update_columns => '{status}'");
        await AttachAsync(table, anyColumn, ", operations => '{UPDATE}'");
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'new', 1, NULL)");

        await database.ExecuteAsync($"UPDATE {table} SET note = 'only the note' WHERE id = 1");
        await database.ExecuteAsync($"UPDATE {table} SET status = status, note = note WHERE id = 1");
        await database.ExecuteAsync($"UPDATE {table} SET status = 'paid' WHERE id = 1");

        var listened = (await EventsAsync(listening)).Where(e => e.Op == "UPDATE").ToList();
        Assert.That(listened, Has.Count.EqualTo(1), "only the status change is an event for update_columns {status}");
        Assert.That(listened[0].New!.Value.GetProperty("status").GetString(), Is.EqualTo("paid"));
        var all = await EventsAsync(anyColumn);
        Assert.That(all, Has.Count.EqualTo(2), "with any column listened, the no-op update is still no event");
    }

    [Test]
    public async Task Update_columns_of_types_without_equality_work()
    {
        var table = Unique("jsony");
        await database.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, doc json, spot point)");
        var trigger = Unique("t");
        await AttachAsync(table, trigger, ", update_columns => '{doc,spot}'");
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, '{{\"a\": 1}}', '(1,2)')");

        await database.ExecuteAsync($"UPDATE {table} SET doc = '{{\"a\": 1}}' WHERE id = 1");
        await database.ExecuteAsync($"UPDATE {table} SET spot = '(3,4)' WHERE id = 1");

        Assert.That((await EventsAsync(trigger)).Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "UPDATE" }));
    }

    [Test]
    public async Task Payload_columns_limit_old_and_new()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger, ", payload_columns => '{id,status}'");

        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'new', 99, 'secret')");
        await database.ExecuteAsync($"UPDATE {table} SET status = 'paid' WHERE id = 1");
        await database.ExecuteAsync($"DELETE FROM {table} WHERE id = 1");

        var events = await EventsAsync(trigger);
        Assert.That(events, Has.Count.EqualTo(3));
        foreach (var row in events.SelectMany(e => new[] { e.Old, e.New }).OfType<JsonElement>())
        {
            Assert.That(row.EnumerateObject().Select(p => p.Name), Is.EquivalentTo(new[] { "id", "status" }));
        }

        Assert.That(events[0].Old, Is.Null);
        Assert.That(events[2].New, Is.Null);
    }

    [Test]
    public async Task Condition_filters_rows_for_every_operation()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger, ", condition => 'NEW.amount > 100 OR OLD.amount > 100'");

        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'small', 5, NULL), (2, 'big', 500, NULL)");
        await database.ExecuteAsync($"UPDATE {table} SET status = 'x'");
        await database.ExecuteAsync($"DELETE FROM {table}");

        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "UPDATE", "DELETE" }));
        Assert.That(events.All(e => (e.New ?? e.Old)!.Value.GetProperty("id").GetInt64() == 2), Is.True);
    }

    [Test]
    public async Task Session_variables_and_traceparent_set_locally_are_captured()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        const string traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

        await using (var connection = await database.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand(
                "SET LOCAL trigger_events.session = '{\"x-user-id\": \"42\", \"role\": \"clerk\"}';" +
                $"SET LOCAL trigger_events.traceparent = '{traceparent}';" +
                $"INSERT INTO {table} VALUES (1, 'new', 1, NULL); UPDATE {table} SET status = 'x'", connection, transaction).ExecuteNonQueryAsync();
            await transaction.CommitAsync();
        }

        await database.ExecuteAsync($"INSERT INTO {table} VALUES (2, 'after the transaction', 1, NULL)");

        var events = await EventsAsync(trigger);
        Assert.That(events, Has.Count.EqualTo(3));
        foreach (var captured in events.Take(2))
        {
            Assert.That(captured.Session!.Value.GetProperty("x-user-id").GetString(), Is.EqualTo("42"));
            Assert.That(captured.Traceparent, Is.EqualTo(traceparent));
        }

        Assert.That(events[2].Session, Is.Null, "SET LOCAL ends with its transaction");
        Assert.That(events[2].Traceparent, Is.Null);
    }

    [Test]
    public async Task Session_text_that_is_not_a_json_object_is_kept_raw_and_never_fails_the_write()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        await using (var connection = await database.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand(
                $"SET LOCAL trigger_events.session = 'not json'; INSERT INTO {table} VALUES (1, 'new', 1, NULL)", connection, transaction).ExecuteNonQueryAsync();
            await transaction.CommitAsync();
        }

        var events = await EventsAsync(trigger);
        Assert.That(events.Single().Session!.Value.GetProperty("raw").GetString(), Is.EqualTo("not json"));
    }

    [Test]
    public async Task A_two_megabyte_row_is_captured_whole()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        var note = new string('x', 2 * 1024 * 1024);

        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'big', 1, $1)", note);

        var events = await EventsAsync(trigger);
        Assert.That(events.Single().New!.Value.GetProperty("note").GetString(), Has.Length.EqualTo(note.Length));
    }

    [Test]
    public async Task Odd_types_come_out_as_sensible_json()
    {
        var table = Unique("odd");
        var type = Unique("mood");
        await database.ExecuteAsync($"CREATE TYPE {type} AS ENUM ('happy', 'sad')");
        await database.ExecuteAsync(
            $"CREATE TABLE {table} (id int, n numeric, big bigint, j json, jb jsonb, arr int[], txt text[], b bytea, ts timestamptz, m {type}, u uuid, f float8)");
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        await database.ExecuteAsync(
            $"INSERT INTO {table} VALUES (1, 12345678901234567890.123456789, 9007199254740993, '{{\"k\": [1, 2]}}', '{{\"z\": null}}', " +
            "'{1,2,3}', '{\"a b\",NULL}', '\\x00ff', '2026-11-26 17:13:34.123456+00', 'sad', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'NaN')");

        var row = (await EventsAsync(trigger)).Single().New!.Value;
        Assert.That(row.GetProperty("n").GetRawText(), Is.EqualTo("12345678901234567890.123456789"), "numeric stays an exact JSON number");
        Assert.That(row.GetProperty("big").GetRawText(), Is.EqualTo("9007199254740993"), "bigint beyond 2^53 stays exact");
        Assert.That(row.GetProperty("j").GetProperty("k")[1].GetInt32(), Is.EqualTo(2), "json is nested, not a string");
        Assert.That(row.GetProperty("jb").GetProperty("z").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(row.GetProperty("arr").EnumerateArray().Select(e => e.GetInt32()), Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(row.GetProperty("txt")[1].ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(row.GetProperty("b").GetString(), Is.EqualTo("\\x00ff"), "bytea is its hex text");
        Assert.That(row.GetProperty("ts").GetString(), Does.StartWith("2026-11-26T17:13:34.123456"));
        Assert.That(row.GetProperty("m").GetString(), Is.EqualTo("sad"));
        Assert.That(row.GetProperty("u").GetString(), Is.EqualTo("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
        Assert.That(row.GetProperty("f").GetString(), Is.EqualTo("NaN"), "NaN, which JSON numbers cannot hold, becomes a string");
    }

    [Test]
    public async Task Writes_under_session_replication_role_replica_are_not_captured()
    {
        // Decided (README): changes applied by logical replication or by a data load that sets
        // replica mode are not new events; a DBA who wants them uses ENABLE ALWAYS TRIGGER.
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);

        await using (var connection = await database.DataSource.OpenConnectionAsync())
        {
            await new NpgsqlCommand($"SET session_replication_role = replica; INSERT INTO {table} VALUES (1, 'replicated', 1, NULL); RESET session_replication_role", connection).ExecuteNonQueryAsync();
        }

        await database.ExecuteAsync($"INSERT INTO {table} VALUES (2, 'local', 1, NULL)");
        var events = await EventsAsync(trigger);
        Assert.That(events.Single().New!.Value.GetProperty("status").GetString(), Is.EqualTo("local"));
    }

    [Test]
    public async Task The_same_attach_twice_changes_nothing()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        const string options = ", operations => '{update,INSERT,INSERT}', update_columns => '{status,amount}', payload_columns => '{id,status}', condition => 'NEW.id > 0'";
        Assert.That(await AttachAsync(table, trigger, options), Is.EqualTo("created"));
        var before = await database.ScalarAsync<string>(
            $"SELECT string_agg(oid::text || tgname || tgfoid::text, ',' ORDER BY oid) FROM pg_trigger WHERE tgrelid = '{table}'::regclass");

        Assert.That(await AttachAsync(table, trigger, options), Is.EqualTo("unchanged"));

        var after = await database.ScalarAsync<string>(
            $"SELECT string_agg(oid::text || tgname || tgfoid::text, ',' ORDER BY oid) FROM pg_trigger WHERE tgrelid = '{table}'::regclass");
        Assert.That(after, Is.EqualTo(before));
        Assert.That(await AttachAsync(table, trigger, ", operations => '{INSERT}'"), Is.EqualTo("replaced"));
        Assert.That(await database.ScalarAsync<string[]>($"SELECT operations FROM trigger_events.triggers WHERE name = '{trigger}'"), Is.EqualTo(new[] { "INSERT" }));
    }

    [Test]
    public async Task Detaching_keeps_captured_events_and_their_deliveries()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        await database.ExecuteAsync($"INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('{trigger}_sub', '{trigger}')");
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'new', 1, NULL)");

        Assert.That(await database.ScalarAsync<bool>($"SELECT trigger_events.detach('{trigger}')"), Is.True);
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (2, 'after detach', 1, NULL)");

        Assert.That(await EventsAsync(trigger), Has.Count.EqualTo(1));
        Assert.That(await database.ScalarAsync<long>($"SELECT pending FROM trigger_events.subscription_status WHERE subscription = '{trigger}_sub'"), Is.EqualTo(1));
        Assert.That(await database.ScalarAsync<long>($"SELECT count(*) FROM pg_trigger WHERE tgrelid = '{table}'::regclass"), Is.Zero);
        Assert.That(await database.ScalarAsync<bool>($"SELECT trigger_events.detach('{trigger}')"), Is.False, "detaching again is a no-op");
    }

    [Test]
    public async Task The_writer_records_one_row_per_change_and_the_fan_out_gives_each_subscription_its_operations()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        await database.ExecuteAsync(
            $"INSERT INTO trigger_events.subscriptions (name, trigger_name, operations, enabled) VALUES " +
            $"('{trigger}_all', '{trigger}', DEFAULT, true), ('{trigger}_ins', '{trigger}', '{{INSERT}}', true), ('{trigger}_off', '{trigger}', DEFAULT, false)");

        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 'new', 1, NULL), (2, 'new', 1, NULL)");
        await database.ExecuteAsync($"UPDATE {table} SET status = 'paid'");

        Task<string> DeliveriesAsync() => database.ScalarAsync<string>(
            "SELECT string_agg(s.name || '=' || (SELECT count(*) FROM trigger_events.deliveries d WHERE d.subscription_id = s.id), ',' ORDER BY s.name) " +
            "FROM trigger_events.subscriptions s WHERE s.trigger_name = $1", trigger);
        Task<string> PendingAsync() => database.ScalarAsync<string>(
            "SELECT string_agg(subscription || '=' || pending, ',' ORDER BY subscription) FROM trigger_events.subscription_status WHERE trigger_name = $1", trigger);
        Assert.That(await EventsAsync(trigger), Has.Count.EqualTo(4));
        Assert.That(await DeliveriesAsync(), Is.EqualTo($"{trigger}_all=0,{trigger}_ins=0,{trigger}_off=0"), "the writer made no delivery rows");
        Assert.That(await PendingAsync(), Is.EqualTo($"{trigger}_all=4,{trigger}_ins=2,{trigger}_off=4"), "not yet fanned out, yet pending");

        await database.FanOutAsync($"{trigger}_all", $"{trigger}_ins");

        Assert.That(await DeliveriesAsync(), Is.EqualTo($"{trigger}_all=4,{trigger}_ins=2,{trigger}_off=0"));
        Assert.That(await PendingAsync(), Is.EqualTo($"{trigger}_all=4,{trigger}_ins=2,{trigger}_off=4"), "the paused one keeps its backlog");
    }

    [Test]
    public async Task Quoted_identifiers_with_spaces_capitals_quotes_and_non_ascii_letters_work()
    {
        var table = $"\"Ordres d'été \"\"{Guid.NewGuid():N}\"\"\"";
        await database.ExecuteAsync($"CREATE TABLE {table} (\"Id\" int, \"prix total\" numeric, \"naïve \"\"quote\"\"\" text)");
        var trigger = Unique("t");
        var escaped = table.Replace("'", "''", StringComparison.Ordinal);

        await database.ScalarAsync<string>(
            $"SELECT trigger_events.attach('{escaped}', '{trigger}', update_columns => ARRAY['prix total'], payload_columns => ARRAY['Id', 'naïve \"quote\"'], condition => 'NEW.\"Id\" > 0')");
        await database.ExecuteAsync($"INSERT INTO {table} VALUES (1, 10, 'é')");
        await database.ExecuteAsync($"UPDATE {table} SET \"prix total\" = 11");

        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "UPDATE" }));
        Assert.That(events[0].Table, Does.StartWith("Ordres d'été \""));
        Assert.That(events[1].New!.Value.GetProperty("naïve \"quote\"").GetString(), Is.EqualTo("é"));
    }

    [TestCase("update_columns => '{missing}'", "unknown column missing")]
    [TestCase("payload_columns => '{id,\"also missing\"}'", "unknown column \"also missing\"")]
    [TestCase("operations => '{INSERT,TRUNCATE}'", "unknown operation 'TRUNCATE'")]
    [TestCase("condition => 'NEW.nope > 1'", "invalid condition")]
    [TestCase("condition => 'NEW.amount'", "not a boolean expression")]
    [TestCase("condition => 'NEW.id +'", "invalid condition")]
    [TestCase("condition => 'true); DROP TABLE {table}; SELECT (1'", "cannot open multi-query plan")]
    [TestCase("condition => 'true /*'", "invalid condition")]
    [TestCase("condition => 'true) UNION ALL SELECT 1 WHERE (true'", "invalid condition")]
    [TestCase("condition => 'true) UNION ALL SELECT (true'", "syntax error at or near \"UNION\"")]
    [TestCase("condition => '(SELECT count(*) FROM pg_catalog.pg_authid) >= 0'", "contains a subquery")]
    [TestCase("condition => 'EXISTS (SELECT 1 FROM public.{table})'", "contains a subquery")]
    [TestCase("condition => 'count(*) > 0'", "contains an aggregate")]
    [TestCase("condition => 'generate_series(1, 2) > NEW.id'", "contains a set-returning function")]
    public async Task A_refused_attach_names_the_problem_and_leaves_nothing_behind(string options, string message)
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger, ", operations => '{INSERT}'");
        var before = await SnapshotAsync(table);

        var error = Assert.ThrowsAsync<PostgresException>(() => AttachAsync(table, trigger, ", " + options.Replace("{table}", table, StringComparison.Ordinal)));

        Assert.That(error!.MessageText, Does.Contain(message));
        Assert.That(await SnapshotAsync(table), Is.EqualTo(before));
    }

    [Test]
    public async Task A_trigger_name_used_on_another_table_is_refused()
    {
        var first = await CreateOrdersTableAsync();
        var second = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(first, trigger);
        var before = await SnapshotAsync(second);

        var error = Assert.ThrowsAsync<PostgresException>(() => AttachAsync(second, trigger));

        Assert.That(error!.MessageText, Does.Contain($"already used on table public.{first}"));
        Assert.That(await SnapshotAsync(second), Is.EqualTo(before));
    }

    [TestCase("bad name")]
    [TestCase("x'; DROP TABLE y; --")]
    [TestCase("")]
    public async Task Trigger_names_outside_the_safe_alphabet_are_refused(string name)
    {
        var table = await CreateOrdersTableAsync();
        await using var command = database.DataSource.CreateCommand("SELECT trigger_events.attach($1::regclass, $2)");
        command.Parameters.Add(new NpgsqlParameter { Value = table });
        command.Parameters.Add(new NpgsqlParameter { Value = name });

        var error = Assert.ThrowsAsync<PostgresException>(() => command.ExecuteScalarAsync());

        Assert.That(error!.MessageText, Does.Contain("invalid trigger name"));
    }

    [Test]
    public async Task An_application_role_without_privileges_writes_to_an_attached_table_but_cannot_touch_the_event_tables()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        var role = Unique("app");
        await database.ExecuteAsync($"CREATE ROLE {role} LOGIN; GRANT ALL ON {table} TO {role}");
        try
        {
            await using var connection = await database.DataSource.OpenConnectionAsync();
            await new NpgsqlCommand($"SET ROLE {role}; INSERT INTO {table} VALUES (1, 'by app', 1, NULL); UPDATE {table} SET status = 'x'; DELETE FROM {table}", connection).ExecuteNonQueryAsync();

            var read = Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand("SELECT count(*) FROM trigger_events.event_log", connection).ExecuteScalarAsync());
            Assert.That(read!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege));
            var attach = Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand($"SELECT trigger_events.attach('{table}', 'hijack')", connection).ExecuteScalarAsync());
            Assert.That(attach!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege));
            await new NpgsqlCommand("RESET ROLE", connection).ExecuteNonQueryAsync();
        }
        finally
        {
            await database.ExecuteAsync($"DROP OWNED BY {role}; DROP ROLE {role}");
        }

        var events = await EventsAsync(trigger);
        Assert.That(events.Select(e => e.Op), Is.EqualTo(new[] { "INSERT", "UPDATE", "DELETE" }));
    }

    [Test]
    public async Task Invoke_captures_a_manual_event_in_the_callers_transaction()
    {
        var table = await CreateOrdersTableAsync();
        var trigger = Unique("t");
        await AttachAsync(table, trigger);
        await database.ExecuteAsync($"INSERT INTO trigger_events.subscriptions (name, trigger_name, operations) VALUES ('{trigger}_m', '{trigger}', '{{MANUAL}}')");

        await using (var connection = await database.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand($"SELECT trigger_events.invoke('{trigger}', '{{\"rolled\": \"back\"}}')", connection, transaction).ExecuteScalarAsync();
            await transaction.RollbackAsync();
        }

        var id = await database.ScalarAsync<long>($"SELECT trigger_events.invoke('{trigger}', '{{\"hello\": \"world\"}}')");

        var events = await EventsAsync(trigger);
        Assert.That(events.Single().Id, Is.EqualTo(id));
        Assert.That(events[0].Op, Is.EqualTo("MANUAL"));
        Assert.That(events[0].Old, Is.Null);
        Assert.That(events[0].New!.Value.GetProperty("hello").GetString(), Is.EqualTo("world"));
        Assert.That(await database.ScalarAsync<long>($"SELECT pending FROM trigger_events.subscription_status WHERE subscription = '{trigger}_m'"), Is.EqualTo(1));
        var unknown = Assert.ThrowsAsync<PostgresException>(() => database.ScalarAsync<long>("SELECT trigger_events.invoke('no_such_trigger', '{}')"));
        Assert.That(unknown!.MessageText, Does.Contain("no event trigger named 'no_such_trigger'"));
    }

    private Task<string> SnapshotAsync(string table) => database.ScalarAsync<string>(
        $"""
        SELECT coalesce((SELECT string_agg(tgname || ':' || tgfoid::regproc::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = '{table}'::regclass), '') || '|' ||
               coalesce((SELECT string_agg(name || ':' || operations::text || coalesce(condition, ''), ',' ORDER BY name) FROM trigger_events.event_triggers), '') || '|' ||
               (SELECT count(*) FROM pg_proc WHERE pronamespace = 'trigger_events'::regnamespace)::text
        """);

    private sealed record CapturedEvent(long Id, string Schema, string Table, string Op, JsonElement? Old, JsonElement? New, JsonElement? Session, string? Traceparent);
}
