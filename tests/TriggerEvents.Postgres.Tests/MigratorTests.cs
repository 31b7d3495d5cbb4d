using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

public sealed class MigratorTests
{
    [Test]
    public async Task Migrating_an_empty_database_installs_the_latest_version()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);

        var result = await Migrator.MigrateAsync(database.DataSource, CancellationToken.None);

        Assert.That(result.FromVersion, Is.Zero);
        Assert.That(result.Applied, Is.EqualTo(Enumerable.Range(1, MigrationSource.LatestVersion)));
        var version = await Migrator.GetVersionAsync(database.DataSource, CancellationToken.None);
        Assert.That(version.IsCurrent, Is.True);
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log"), Is.Zero);
    }

    [Test]
    public async Task Migrating_again_applies_nothing()
    {
        await using var database = await TestDatabase.CreateAsync();

        var result = await Migrator.MigrateAsync(database.DataSource, CancellationToken.None);

        Assert.That(result.Applied, Is.Empty);
        Assert.That(result.FromVersion, Is.EqualTo(MigrationSource.LatestVersion));
    }

    [Test]
    public async Task Concurrent_migrators_apply_each_version_exactly_once()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);

        var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ =>
            Task.Run(() => Migrator.MigrateAsync(database.DataSource, CancellationToken.None))));

        Assert.That(results.SelectMany(r => r.Applied), Is.EqualTo(Enumerable.Range(1, MigrationSource.LatestVersion)));
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.migrations"), Is.EqualTo(MigrationSource.LatestVersion));
    }

    [Test]
    public async Task A_worker_role_named_otherwise_and_granted_before_key_ordering_still_claims_after_the_upgrade()
    {
        // grant_worker_role() exists since 000005; 000008 added the sequence to what it grants.
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await Migrator.MigrateAsync(database.DataSource, 7, CancellationToken.None);
        await using var role = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"SELECT trigger_events.grant_worker_role('{role.Name}')");
        await Migrator.MigrateAsync(database.DataSource, CancellationToken.None);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");

        // As the worker does, logged in as that role: register, then fan out and claim.
        await using var asWorker = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(role.ConnectionString) { Pooling = false }.ConnectionString);
        var subscription = new SubscriptionConfig
        {
            Name = "hook",
            Trigger = "orders_changed",
            Webhook = new WebhookConfig { Url = new Uri("http://127.0.0.1:9/hook") },
        };
        var registered = await new SubscriptionRegistry(asWorker).SyncAsync(WorkerConfig.DefaultGroup, [subscription], CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        var claimed = await new DeliveryStore(asWorker).ClaimAsync(registered.Single().Id, Guid.NewGuid(), 10, TimeSpan.FromMinutes(1), CancellationToken.None);

        Assert.That(claimed, Has.Count.EqualTo(1), "the fan-out numbers its batch from delivery_order, which the role may use");

        // A right the role lost comes back with the next migrate, though it has nothing to apply.
        await database.ExecuteAsync($"REVOKE USAGE ON SEQUENCE trigger_events.delivery_order FROM {role.Name}");
        var again = await Migrator.MigrateAsync(database.DataSource, CancellationToken.None);
        Assert.That(again.Applied, Is.Empty);
        Assert.That(await database.ScalarAsync<bool>($"SELECT has_sequence_privilege('{role.Name}', 'trigger_events.delivery_order', 'USAGE')"), Is.True);
    }

    [Test]
    public async Task A_database_newer_than_the_binary_is_refused_and_left_alone()
    {
        await using var database = await TestDatabase.CreateAsync();
        var future = MigrationSource.LatestVersion + 1;
        await database.ExecuteAsync($"INSERT INTO trigger_events.migrations (version, name) VALUES ({future}, 'from_the_future')");

        var error = Assert.ThrowsAsync<SchemaTooNewException>(() => Migrator.MigrateAsync(database.DataSource, CancellationToken.None));

        Assert.That(error!.Message, Does.Contain($"version {future}"));
        var version = await Migrator.GetVersionAsync(database.DataSource, CancellationToken.None);
        Assert.That(version.Database, Is.EqualTo(future));
    }

    [Test]
    public async Task A_newer_database_is_refused_saying_whether_this_releases_workers_run_on_it()
    {
        // A rollback: the next two releases' migrate ran, each declaring the workers it keeps.
        await using var database = await TestDatabase.CreateAsync();
        var ours = MigrationSource.LatestVersion;
        await database.ExecuteAsync(
            $"INSERT INTO trigger_events.migrations (version, name, workers_from) VALUES ({ours + 1}, 'next', {ours}), ({ours + 2}, 'after', {ours - 1})");

        var keeps = Assert.ThrowsAsync<SchemaTooNewException>(() => Migrator.MigrateAsync(database.DataSource, CancellationToken.None));
        var kept = await Migrator.GetVersionAsync(database.DataSource, CancellationToken.None);
        await database.ExecuteAsync($"INSERT INTO trigger_events.migrations (version, name) VALUES ({ours + 3}, 'breaking')");
        var breaks = Assert.ThrowsAsync<SchemaTooNewException>(() => Migrator.MigrateAsync(database.DataSource, CancellationToken.None));
        var broken = await Migrator.GetVersionAsync(database.DataSource, CancellationToken.None);

        Assert.That((kept.Database, kept.WorkersFrom, kept.IsNewerAndRunsThisBinary), Is.EqualTo((ours + 2, ours, true)),
            "the later of the two floors counts");
        Assert.That(keeps!.Message, Does.Contain($"keep the workers of version {ours} and later working, so this release's workers run on it"));
        Assert.That((broken.WorkersFrom, broken.IsNewerAndRunsThisBinary), Is.EqualTo((ours + 3, false)), "NULL keeps no earlier worker");
        Assert.That(breaks!.Message, Does.Contain($"version {ours + 3}").And.Contain($"needs workers of schema version {ours + 3} or later"));
        Assert.That(await database.ScalarAsync<long>($"SELECT count(*) FROM trigger_events.migrations WHERE version > {ours}"), Is.EqualTo(3),
            "nothing applied, nothing removed");
    }

    [Test]
    public async Task The_migration_that_adds_the_workers_floor_declares_its_own()
    {
        await using var database = await TestDatabase.CreateAsync();

        var floors = await database.ScalarAsync<string>(
            "SELECT string_agg(version || '=' || coalesce(workers_from::text, 'null'), ',' ORDER BY version) FROM trigger_events.migrations WHERE version >= 25");

        Assert.That(floors, Does.StartWith("25=null,26=25"), "earlier rows stay NULL; 000026 keeps workers of 25");
    }

    [Test]
    public async Task Workers_of_schema_27_start_on_the_latest_schema()
    {
        // 000028 to 000030 keep the workers of 27: each migration a binary does not know must
        // declare it kept (the floor is the highest of their declarations).
        await using var database = await TestDatabase.CreateAsync();

        var floor = await database.ScalarAsync<int>(
            "SELECT max(coalesce(workers_from, version)) FROM trigger_events.migrations WHERE version > 27");

        Assert.That(floor, Is.EqualTo(27));
    }

    [Test]
    public async Task The_printed_script_installs_the_schema_and_can_be_applied_twice()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        using var script = new StringWriter();
        Migrator.WriteScript(script);

        await database.ExecuteAsync(script.ToString());
        await database.ExecuteAsync(script.ToString());

        var version = await Migrator.GetVersionAsync(database.DataSource, CancellationToken.None);
        Assert.That(version.IsCurrent, Is.True);
        var result = await Migrator.MigrateAsync(database.DataSource, CancellationToken.None);
        Assert.That(result.Applied, Is.Empty, "the script and the migrator record versions the same way");
    }

    [Test]
    public async Task A_printed_migration_whose_predecessor_gave_up_is_not_applied_over_the_gap()
    {
        // A run of the script without ON_ERROR_STOP goes on after migration 21 gave up waiting
        // for a lock: 22 must not be applied, or max(version) would hide 21 for good.
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await Migrator.MigrateAsync(database.DataSource, 20, CancellationToken.None);
        using var script = new StringWriter();
        Migrator.WriteScript(script);
        var text = script.ToString();
        var start = text.IndexOf("-- Migration 22:", StringComparison.Ordinal);
        var block = text[start..text.IndexOf("-- Migration 23:", start, StringComparison.Ordinal)];

        var error = Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync(block));

        Assert.That(error!.MessageText, Does.Contain("Migration 21 is not applied, so 22 is not either"));
        Assert.That(await database.ScalarAsync<int>("SELECT max(version) FROM trigger_events.migrations"), Is.EqualTo(20));
    }

    [Test]
    public async Task Migrator_does_not_block_a_database_without_the_schema_from_reporting_version_zero()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);

        var version = await Migrator.GetVersionAsync(database.DataSource, CancellationToken.None);

        Assert.That(version.Database, Is.Zero);
        Assert.That(version.IsCurrent, Is.False);
        Assert.That(await database.ScalarAsync<bool>("SELECT to_regnamespace('trigger_events') IS NULL"), Is.True);
    }

    /// <summary>
    /// The roles of a managed database at the release before 000021, which regenerates every
    /// attached trigger: a schema owner that is not a superuser, and the application's role
    /// owning <c>orders</c> (attached), with one of its transactions left open after a write.
    /// </summary>
    private sealed class OpenWriterBeforeUpgrade : IAsyncDisposable
    {
        public required TestDatabase Database { get; init; }

        public required LoginRole Owner { get; init; }

        public required LoginRole App { get; init; }

        public required NpgsqlConnection Writer { get; init; }

        public required NpgsqlTransaction Open { get; init; }

        public static async Task<OpenWriterBeforeUpgrade> CreateAsync()
        {
            var database = await TestDatabase.CreateAsync(migrated: false);
            var owner = await LoginRole.CreateAsync(database);
            var app = await LoginRole.CreateAsync(database);
            await database.ExecuteAsync($"GRANT CREATE ON DATABASE {database.Name} TO {owner.Name}; GRANT CREATE ON SCHEMA public TO {app.Name}");
            await using (var asOwner = NpgsqlDataSource.Create(owner.ConnectionString))
            {
                await Migrator.MigrateAsync(asOwner, 20, CancellationToken.None);
            }

            await using (var connection = await app.OpenAsync())
            {
                await new NpgsqlCommand($"CREATE TABLE orders (id int PRIMARY KEY); GRANT TRIGGER ON orders TO {owner.Name}", connection).ExecuteNonQueryAsync();
            }

            await using (var connection = await owner.OpenAsync())
            {
                await new NpgsqlCommand("SELECT trigger_events.attach('public.orders', 'orders_changed')", connection).ExecuteScalarAsync();
            }

            var writer = await app.OpenAsync();
            var open = await writer.BeginTransactionAsync();
            await new NpgsqlCommand("INSERT INTO orders VALUES (1)", writer, open).ExecuteNonQueryAsync();
            return new OpenWriterBeforeUpgrade { Database = database, Owner = owner, App = app, Writer = writer, Open = open };
        }

        public async Task<MigrationResult> MigrateAsOwnerAsync(MigrationLockPolicy locks)
        {
            await using var asOwner = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(Owner.ConnectionString) { Pooling = false }.ConnectionString);
            return await Migrator.MigrateAsync(asOwner, locks, CancellationToken.None);
        }

        public async ValueTask DisposeAsync()
        {
            await Open.DisposeAsync();
            await Writer.DisposeAsync();
            await App.DisposeAsync();
            await Owner.DisposeAsync();
            await Database.DisposeAsync();
        }
    }

    [Test]
    public async Task An_upgrade_behind_an_open_writer_lets_the_applications_writes_through_and_applies_once_it_commits()
    {
        await using var scene = await OpenWriterBeforeUpgrade.CreateAsync();
        var waits = new System.Collections.Concurrent.ConcurrentQueue<MigrationLockWait>();
        var locks = new MigrationLockPolicy(TimeSpan.FromMilliseconds(300), Tries: 100) { Pause = _ => TimeSpan.FromMilliseconds(200), Waiting = waits.Enqueue };

        var migrating = scene.MigrateAsOwnerAsync(locks);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (waits.IsEmpty)
        {
            Assert.That(migrating.IsCompleted, Is.False, "it finished without waiting: " + migrating.Exception?.GetBaseException().Message);
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "no try gave up waiting within a minute");
            await Task.Delay(50);
        }

        // Without a lock timeout this write would queue behind the migration's lock request until
        // the open transaction ended.
        await using (var other = await scene.App.OpenAsync())
        {
            var write = new NpgsqlCommand("INSERT INTO orders VALUES (2)", other).ExecuteNonQueryAsync();
            Assert.That(await Task.WhenAny(write, Task.Delay(TimeSpan.FromSeconds(30))), Is.SameAs(write), "the application's write went through during the upgrade");
        }

        Assert.That(migrating.IsCompleted, Is.False, "the open transaction still holds the table");
        await scene.Open.CommitAsync();
        var result = await migrating;

        Assert.That(result.Applied, Is.EqualTo(Enumerable.Range(21, MigrationSource.LatestVersion - 20)));
        var wait = waits.First();
        Assert.That(wait.Migration.Version, Is.EqualTo(21));
        Assert.That(wait.Holders.Select(h => h.Pid), Does.Contain(scene.Writer.ProcessID), "the open writer is named");
        Assert.That(wait.Holders.Single(h => h.Pid == scene.Writer.ProcessID).Tables, Does.Contain("orders"));
        Assert.That(await scene.Database.ScalarAsync<string>("SELECT string_agg(new_data->>'id', ',' ORDER BY id) FROM trigger_events.event_log"), Is.EqualTo("1,2"),
            "both writes captured");
    }

    [Test]
    public async Task An_upgrade_that_never_gets_its_lock_stops_naming_the_holder_and_keeps_the_earlier_migrations()
    {
        await using var scene = await OpenWriterBeforeUpgrade.CreateAsync();
        var locks = new MigrationLockPolicy(TimeSpan.FromMilliseconds(200), Tries: 3) { Pause = _ => TimeSpan.FromMilliseconds(100) };

        var error = Assert.ThrowsAsync<MigrationLockException>(() => scene.MigrateAsOwnerAsync(locks));

        Assert.That(error!.Migration.Version, Is.EqualTo(21));
        Assert.That(error.Message, Does.Contain($"pid {scene.Writer.ProcessID}").And.Contain("in 3 tries").And.Contain("--lock-timeout 0"), error.Message);
        Assert.That(await scene.Database.ScalarAsync<int>("SELECT max(version) FROM trigger_events.migrations"), Is.EqualTo(20));
        await scene.Open.CommitAsync();
        Assert.That((await scene.MigrateAsOwnerAsync(locks)).ToVersion, Is.EqualTo(MigrationSource.LatestVersion), "run again once the writer is done");
    }

    [Test]
    public async Task A_schema_owner_with_only_TRIGGER_upgrades_triggers_the_table_owner_set_to_fire_always_or_on_replica()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await using var owner = await LoginRole.CreateAsync(database);
        await using var app = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT CREATE ON DATABASE {database.Name} TO {owner.Name}; GRANT CREATE ON SCHEMA public TO {app.Name}");
        await using var asOwner = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(owner.ConnectionString) { Pooling = false }.ConnectionString);
        await Migrator.MigrateAsync(asOwner, 22, CancellationToken.None);
        await using (var connection = await app.OpenAsync())
        {
            await new NpgsqlCommand($"CREATE TABLE orders (id int PRIMARY KEY, note text); GRANT TRIGGER ON orders TO {owner.Name}", connection).ExecuteNonQueryAsync();
        }

        await asOwner.CreateCommand("SELECT trigger_events.attach('public.orders', 'orders_changed', payload_columns => '{id}')").ExecuteScalarAsync();
        // For logical replication, as only the table's owner may.
        await using (var connection = await app.OpenAsync())
        {
            await new NpgsqlCommand(
                "ALTER TABLE orders ENABLE ALWAYS TRIGGER te_orders_changed_insert; ALTER TABLE orders ENABLE REPLICA TRIGGER te_orders_changed_update",
                connection).ExecuteNonQueryAsync();
        }

        var upgraded = await Migrator.MigrateAsync(asOwner, CancellationToken.None);
        var changingWhen = Assert.ThrowsAsync<PostgresException>(async () =>
            await asOwner.CreateCommand("SELECT trigger_events.attach('public.orders', 'orders_changed', payload_columns => '{id}', update_columns => '{note}')").ExecuteScalarAsync());
        // On a replica, as a logical replication worker applies changes.
        await database.ExecuteAsync("SET session_replication_role = replica; INSERT INTO orders VALUES (1, 'a'); UPDATE orders SET note = 'b'; RESET session_replication_role");

        Assert.That(upgraded.ToVersion, Is.EqualTo(MigrationSource.LatestVersion));
        Assert.That(await database.ScalarAsync<string>("SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgname <> 'te_orders_changed_no_parent'"),
            Is.EqualTo("te_orders_changed_delete:O,te_orders_changed_insert:A,te_orders_changed_update:R"), "each mode as the table's owner set it");
        Assert.That(await database.ScalarAsync<string>("SELECT health FROM trigger_events.triggers WHERE name = 'orders_changed'"), Is.EqualTo("ok"), "at the new template");
        Assert.That(await database.ScalarAsync<string>("SELECT string_agg(op || ' ' || new_data::text, '; ' ORDER BY id) FROM trigger_events.event_log"),
            Is.EqualTo("""INSERT {"id": 1}; UPDATE {"id": 1}"""), "the new capture runs, and fires on the replica");
        Assert.That(changingWhen!.SqlState, Is.EqualTo(PostgresErrorCodes.InsufficientPrivilege));
        Assert.That(changingWhen.MessageText, Does.Contain("te_orders_changed_update").And.Contain("only the table's owner"), changingWhen.MessageText);
        Assert.That(changingWhen.Hint, Does.Contain("ALTER TABLE public.orders ENABLE TRIGGER te_orders_changed_update"), changingWhen.Hint);
    }

    [Test]
    public async Task A_schema_owner_with_only_TRIGGER_is_told_the_grants_a_partition_made_after_attach_needs()
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await using var owner = await LoginRole.CreateAsync(database);
        await using var app = await LoginRole.CreateAsync(database);
        await database.ExecuteAsync($"GRANT CREATE ON DATABASE {database.Name} TO {owner.Name}; GRANT CREATE ON SCHEMA public TO {app.Name}");
        await using var asOwner = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(owner.ConnectionString) { Pooling = false }.ConnectionString);
        await Migrator.MigrateAsync(asOwner, CancellationToken.None);
        async Task AsAppAsync(string sql)
        {
            await using var connection = await app.OpenAsync();
            await new NpgsqlCommand(sql, connection).ExecuteNonQueryAsync();
        }

        await AsAppAsync($"""
            CREATE TABLE parts (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
            CREATE TABLE parts_us PARTITION OF parts FOR VALUES IN ('us');
            GRANT TRIGGER ON parts, parts_us TO {owner.Name};
            """);
        await asOwner.CreateCommand("SELECT trigger_events.attach('public.parts', 'parts_changed')").ExecuteScalarAsync();
        // The application adds a partition: its writes are captured, but it has no grant.
        await AsAppAsync("CREATE TABLE parts_jp PARTITION OF parts FOR VALUES IN ('jp'); INSERT INTO parts VALUES (1, 'jp')");

        const string Regenerate = "SELECT trigger_events.attach('public.parts', 'parts_changed', payload_columns => '{id}')";
        var refused = Assert.ThrowsAsync<PostgresException>(async () => await asOwner.CreateCommand(Regenerate).ExecuteScalarAsync());
        var said = await DatabaseProblems.DescribePermissionAsync(asOwner, refused!, CancellationToken.None);
        await AsAppAsync($"GRANT TRIGGER ON public.parts_jp TO {owner.Name}; ALTER DEFAULT PRIVILEGES FOR ROLE {app.Name} IN SCHEMA public GRANT TRIGGER ON TABLES TO {owner.Name}");
        await asOwner.CreateCommand(Regenerate).ExecuteScalarAsync();
        await AsAppAsync("CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu')");
        var again = await asOwner.CreateCommand("SELECT trigger_events.attach('public.parts', 'parts_changed')").ExecuteScalarAsync();

        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log"), Is.EqualTo(1), "the new partition's write was captured");
        Assert.That(said, Does.Contain($"lacks TRIGGER on the partition public.parts_jp").And.Contain($"GRANT TRIGGER ON public.parts_jp TO {owner.Name};")
            .And.Contain($"ALTER DEFAULT PRIVILEGES FOR ROLE {app.Name} IN SCHEMA public GRANT TRIGGER ON TABLES TO {owner.Name};"), said);
        Assert.That(again, Is.EqualTo("replaced"), "a partition made after the default privileges needs no grant of its own");
    }
}
