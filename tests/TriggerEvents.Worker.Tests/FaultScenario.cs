using System.Globalization;
using Npgsql;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>The <c>worker:</c> and subscription settings a fault test runs its workers with.</summary>
internal sealed record FaultWorkerOptions
{
    public int MaxInFlight { get; init; } = 16;

    public int Concurrency { get; init; } = 64;

    public int BatchSize { get; init; } = 100;

    public string PollInterval { get; init; } = "200ms";

    public string Lease { get; init; } = "10s";

    public string WebhookTimeout { get; init; } = "5s";

    public string ShutdownTimeout { get; init; } = "10s";

    /// <summary>Quick retries: a failed attempt in a fault test should not hold the test up.</summary>
    public string RetryInitialInterval { get; init; } = "100ms";

    public string RetryMaxInterval { get; init; } = "1s";

    public int MaxAttempts { get; init; } = 10;

    /// <summary>More keys of the subscription, one per line (<c>rate_limit: 20/s</c>, <c>ordering: key</c>); nested keys keep their relative indentation.</summary>
    public string SubscriptionYaml { get; init; } = "";

    /// <summary>More keys of <c>worker:</c>, each line indented by two spaces (metrics_interval: 200ms).</summary>
    public string WorkerYaml { get; init; } = "";
}

/// <summary>
/// What every fault test starts from: a database with an <c>orders</c> table and the
/// <c>orders_changed</c> event trigger, a <see cref="TrackingReceiver"/>, and real worker
/// processes. The database is either a fresh one on the shared test server or, for tests that
/// restart PostgreSQL, a whole cluster of the test's own, so a restart never disturbs the
/// fixtures that share the server.
/// </summary>
internal sealed class FaultScenario : IAsyncDisposable
{
    public const string Table = "orders";
    public const string Trigger = "orders_changed";

    private readonly List<WorkerProcess> workers = [];
    private readonly TestDatabase? database;
    private readonly LocalCluster? cluster;

    private FaultScenario(string connectionString, NpgsqlDataSource dataSource, TestDatabase? database, LocalCluster? cluster, TrackingReceiver receiver)
    {
        ConnectionString = connectionString;
        DataSource = dataSource;
        this.database = database;
        this.cluster = cluster;
        Receiver = receiver;
        Directory = Path.Combine(Path.GetTempPath(), $"te-faults-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(Directory);
    }

    /// <summary>The database, as the workers get it in <c>TRIGGER_EVENTS_DATABASE_URL</c>.</summary>
    public string ConnectionString { get; }

    /// <summary>The same database as the worker role: what the workers of the scenario log in as.</summary>
    public string WorkerConnectionString => TestDatabase.AsWorker(ConnectionString);

    /// <summary>The test's own connections (their application name is not the worker's).</summary>
    public NpgsqlDataSource DataSource { get; }

    public TrackingReceiver Receiver { get; }

    public string Directory { get; }

    /// <summary>The cluster of this scenario's own; null on the shared server.</summary>
    public LocalCluster Cluster => cluster ?? throw new InvalidOperationException("This scenario runs on the shared server: create it with CreateWithOwnClusterAsync to restart PostgreSQL.");

    /// <summary>A fresh database on the shared test server.</summary>
    public static async Task<FaultScenario> CreateAsync(string attachOptions = "")
    {
        var database = await TestDatabase.CreateAsync();
        var scenario = new FaultScenario(database.ConnectionString, database.DataSource, database, null, await TrackingReceiver.StartAsync());
        await scenario.SetUpAsync(attachOptions);
        return scenario;
    }

    /// <summary>A database in a PostgreSQL cluster of this scenario's own, which the test may restart.</summary>
    public static async Task<FaultScenario> CreateWithOwnClusterAsync(string attachOptions = "")
    {
        // LocalCluster turns synchronous_commit off for speed; a later -c wins, and it is put back
        // on here so that an immediate restart loses no committed transaction: what this test
        // looks for is the worker losing events, not the server losing commits.
        var cluster = await LocalCluster.StartAsync("synchronous_commit=on")
            ?? throw new InvalidOperationException("PostgreSQL server binaries are needed (apt-get install -y postgresql).");
        try
        {
            await using (var admin = NpgsqlDataSource.Create(cluster.AdminConnectionString))
            {
                await using var create = admin.CreateCommand("CREATE DATABASE te_faults");
                await create.ExecuteNonQueryAsync();
            }

            var connectionString = new NpgsqlConnectionStringBuilder(cluster.AdminConnectionString) { Database = "te_faults" }.ConnectionString;

            // No pooling on the test's side: after a restart every pooled connection would be dead.
            var dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
            await using (var setting = dataSource.CreateCommand("SHOW synchronous_commit"))
            {
                var synchronousCommit = (string?)await setting.ExecuteScalarAsync();
                if (synchronousCommit != "on")
                {
                    throw new InvalidOperationException($"The test cluster runs with synchronous_commit = {synchronousCommit}; it needs on.");
                }
            }

            await TestDatabase.EnsureWorkerRoleAsync(cluster.AdminConnectionString);
            await Migrator.MigrateAsync(dataSource, CancellationToken.None);
            var scenario = new FaultScenario(connectionString, dataSource, null, cluster, await TrackingReceiver.StartAsync());
            await scenario.SetUpAsync(attachOptions);
            return scenario;
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    /// <summary>Writes a configuration file for one worker and returns its path and http port.</summary>
    public (string Path, int HttpPort) WriteConfig(FaultWorkerOptions options)
    {
        var port = Loopback.FreePort();
        var file = Path.Combine(Directory, $"{Guid.NewGuid():N}.yaml");
        File.WriteAllText(file, $"""
            subscriptions:
              - name: orders-hook
                trigger: {Trigger}
                max_in_flight: {options.MaxInFlight}
                webhook:
                  url: {Receiver.Url()}
                  timeout: {options.WebhookTimeout}
                retry:
                  max_attempts: {options.MaxAttempts}
                  initial_interval: {options.RetryInitialInterval}
                  max_interval: {options.RetryMaxInterval}
            {SubscriptionKeys(options.SubscriptionYaml)}
            worker:
              http_port: {port}
              batch_size: {options.BatchSize}
              concurrency: {options.Concurrency}
              poll_interval: {options.PollInterval}
              lease: {options.Lease}
              shutdown_timeout: {options.ShutdownTimeout}
            {options.WorkerYaml}
            """);
        return (file, port);
    }

    /// <summary>More keys of the subscription, placed under it whatever their own indentation.</summary>
    private static string SubscriptionKeys(string yaml)
    {
        var lines = yaml.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var indent = lines.Length == 0 ? 0 : lines.Min(line => line.Length - line.TrimStart(' ').Length);
        return string.Join('\n', lines.Select(line => "    " + line[indent..]));
    }

    /// <summary>Starts a worker process and waits until it is ready.</summary>
    public async Task<WorkerProcess> StartWorkerAsync(FaultWorkerOptions options)
    {
        var (path, port) = WriteConfig(options);
        var worker = WorkerProcess.Start(WorkerConnectionString, path, port);
        lock (workers)
        {
            workers.Add(worker);
        }

        await worker.WaitUntilReadyAsync(TimeSpan.FromSeconds(120));
        return worker;
    }

    /// <summary>Inserts rows id = from..to in one statement (one transaction).</summary>
    public Task<int> InsertOrdersAsync(int from, int to) =>
        ExecuteAsync($"INSERT INTO {Table} (id, amount) SELECT g, g FROM generate_series({from}, {to}) g");

    public async Task<int> ExecuteAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return await command.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>The ids of every captured event.</summary>
    public async Task<HashSet<long>> CapturedEventIdsAsync()
    {
        await using var command = DataSource.CreateCommand("SELECT id FROM trigger_events.event_log");
        await using var reader = await command.ExecuteReaderAsync();
        var ids = new HashSet<long>();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetInt64(0));
        }

        return ids;
    }

    /// <summary>Captured events the receiver has not had a 2xx for.</summary>
    public async Task<List<long>> LostEventIdsAsync()
    {
        var delivered = Receiver.DeliveredEventIds();
        return [.. (await CapturedEventIdsAsync()).Where(id => !delivered.Contains(id)).Order()];
    }

    /// <summary>Waits until every captured event has reached the receiver with a 2xx.</summary>
    public async Task WaitUntilAllCapturedDeliveredAsync(TimeSpan timeout)
    {
        var captured = await CapturedEventIdsAsync();
        try
        {
            await Receiver.WaitUntilAsync(
                r => r.DeliveredEventIds().IsSupersetOf(captured), timeout, $"all {captured.Count} captured events delivered");
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}\n{await SummaryAsync()}\n{WorkerOutput()}", e);
        }
    }

    /// <summary>Delivery rows by status.</summary>
    public async Task<Dictionary<string, long>> DeliveryStatusesAsync()
    {
        await using var command = DataSource.CreateCommand("SELECT status::text, count(*) FROM trigger_events.deliveries GROUP BY status");
        await using var reader = await command.ExecuteReaderAsync();
        var counts = new Dictionary<string, long> { ["pending"] = 0, ["in_flight"] = 0, ["delivered"] = 0, ["dead"] = 0 };
        while (await reader.ReadAsync())
        {
            counts[reader.GetString(0)] = reader.GetInt64(1);
        }

        return counts;
    }

    /// <summary>Polls the database until <paramref name="condition"/> holds, failing after the deadline.</summary>
    public async Task WaitForDatabaseAsync(Func<FaultScenario, Task<bool>> condition, TimeSpan timeout, string what)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (!await condition(this))
        {
            try
            {
                await Task.Delay(50, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"Waited {timeout} for {what}; deliveries: {Describe(await DeliveryStatusesAsync())}");
            }
        }
    }

    /// <summary>Waits until every delivery row is delivered: the workers recorded every result.</summary>
    public Task WaitUntilAllRecordedAsync(TimeSpan timeout) =>
        WaitForDatabaseAsync(
            async s => (await s.DeliveryStatusesAsync()) is var counts && counts["pending"] == 0 && counts["in_flight"] == 0 && counts["dead"] == 0,
            timeout, "every delivery recorded as delivered");

    /// <summary>Waits until a worker's output contains <paramref name="text"/>.</summary>
    public static async Task WaitForOutputAsync(WorkerProcess worker, string text, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (!worker.Output.Contains(text, StringComparison.Ordinal))
        {
            try
            {
                await Task.Delay(20, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"Waited {timeout} for '{text}' in the worker's output:\n{worker.Output}");
            }
        }
    }

    /// <summary>A line for assertion messages: what the receiver and the database saw.</summary>
    public async Task<string> SummaryAsync() =>
        $"arrivals {Receiver.Arrivals.Count}, answered {Receiver.Inner.Requests.Count}, delivered {Receiver.DeliveredEventIds().Count}, " +
        $"duplicates {Receiver.Inner.DuplicateDeliveries}; deliveries: {Describe(await DeliveryStatusesAsync())}";

    /// <summary>Every worker's output, for a failing test's message.</summary>
    public string WorkerOutput()
    {
        lock (workers)
        {
            return string.Join("\n", workers.Select((w, i) => $"--- worker {i} (pid {w.Id}) ---\n{w.Output}"));
        }
    }

    public async ValueTask DisposeAsync()
    {
        List<WorkerProcess> started;
        lock (workers)
        {
            started = [.. workers];
        }

        foreach (var worker in started)
        {
            await worker.DisposeAsync();
        }

        await Receiver.DisposeAsync();
        if (database is not null)
        {
            await database.DisposeAsync();
        }
        else
        {
            await DataSource.DisposeAsync();
        }

        cluster?.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temporary file is harmless.
        }
    }

    private static string Describe(Dictionary<string, long> counts) =>
        string.Join(", ", counts.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Key} {c.Value}")));

    private async Task SetUpAsync(string attachOptions)
    {
        await ExecuteAsync($"CREATE TABLE {Table} (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'new', amount numeric)");
        await ScalarAsync<string>($"SELECT trigger_events.attach('{Table}', '{Trigger}'{attachOptions})");
    }
}
