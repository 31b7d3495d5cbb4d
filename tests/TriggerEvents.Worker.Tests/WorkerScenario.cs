using Npgsql;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// One database with a table and an attached trigger, a receiver, and a YAML file pointing at
/// it: what each process test starts from.
/// </summary>
internal sealed class WorkerScenario : IAsyncDisposable
{
    private readonly List<WorkerProcess> workers = [];

    private readonly bool upgrading;

    private WorkerScenario(TestDatabase database, WebhookReceiver receiver, string directory, bool upgrading)
    {
        this.upgrading = upgrading;
        Database = database;
        Receiver = receiver;
        Directory = directory;
    }

    public TestDatabase Database { get; }

    public WebhookReceiver Receiver { get; }

    public string Directory { get; }

    public string Table => "orders";

    public string Trigger => "orders_changed";

    /// <summary>
    /// What workers and commands of the scenario log in as: the worker role, with only the rights
    /// migrate grants it; the owner on a database left at an earlier version (upgrade tests), where
    /// the role has no rights yet.
    /// </summary>
    public string DatabaseUrl => upgrading ? Database.ConnectionString : Database.WorkerConnectionString;

    /// <param name="attachOptions">Extra arguments of the attach call.</param>
    /// <param name="schemaVersion">Migrate only up to this version, as an earlier release left a database (upgrade tests).</param>
    public static async Task<WorkerScenario> CreateAsync(string attachOptions = "", int? schemaVersion = null, string? encoding = null)
    {
        var database = await TestDatabase.CreateAsync(migrated: schemaVersion is null, encoding);
        if (schemaVersion is { } version)
        {
            await Migrator.MigrateAsync(database.DataSource, version, CancellationToken.None);
        }

        await database.ExecuteAsync("CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'new', amount numeric)");
        await database.ScalarAsync<string>($"SELECT trigger_events.attach('orders', 'orders_changed'{attachOptions})");
        var receiver = await WebhookReceiver.StartAsync();
        var directory = Path.Combine(Path.GetTempPath(), $"te-worker-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(directory);
        return new WorkerScenario(database, receiver, directory, upgrading: schemaVersion is not null);
    }

    /// <summary>
    /// Writes a configuration with one subscription named <paramref name="subscription"/> whose
    /// webhook is the receiver, plus extra YAML inside the subscription, its webhook and the
    /// worker section, and returns its path and http port.
    /// </summary>
    public (string Path, int HttpPort) WriteConfig(
        string subscriptionYaml = "", string webhookYaml = "", string workerYaml = "", string subscription = "orders-hook", string path = "/hook")
    {
        var port = Loopback.FreePort();
        var file = System.IO.Path.Combine(Directory, $"{Guid.NewGuid():N}.yaml");
        File.WriteAllText(file, $"""
            subscriptions:
              - name: {subscription}
                trigger: {Trigger}
                webhook:
                  url: {Receiver.Url(path)}
                  timeout: 5s
            {Indent(webhookYaml, 6)}
            {Indent(subscriptionYaml, 4)}
            worker:
              http_port: {port}
              poll_interval: 200ms
              lease: 10s
              shutdown_timeout: 10s
            {Indent(workerYaml, 2)}
            """);
        return (file, port);
    }

    /// <summary>Starts a worker with a configuration from <see cref="WriteConfig"/> and waits until it is ready.</summary>
    public async Task<WorkerProcess> StartWorkerAsync((string Path, int HttpPort) config)
    {
        var worker = WorkerProcess.Start(DatabaseUrl, config.Path, config.HttpPort);
        workers.Add(worker);
        await worker.WaitUntilReadyAsync();
        return worker;
    }

    /// <summary>Inserts rows id = from..to, in one statement, and returns their count.</summary>
    public Task<int> InsertOrdersAsync(int from, int to) =>
        Database.ExecuteAsync($"INSERT INTO orders (id, amount) SELECT g, g FROM generate_series({from}, {to}) g");

    /// <summary>The event ids captured for <see cref="Trigger"/>.</summary>
    public async Task<List<long>> CapturedEventIdsAsync()
    {
        await using var command = Database.DataSource.CreateCommand("SELECT id FROM trigger_events.event_log WHERE trigger_name = $1 ORDER BY id");
        command.Parameters.Add(new NpgsqlParameter { Value = Trigger });
        await using var reader = await command.ExecuteReaderAsync();
        var ids = new List<long>();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetInt64(0));
        }

        return ids;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var worker in workers)
        {
            await worker.DisposeAsync();
        }

        await Receiver.DisposeAsync();
        await Database.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temporary file is harmless.
        }
    }

    private static string Indent(string yaml, int spaces) =>
        string.Join('\n', yaml.Split('\n').Select(line => line.Length == 0 ? line : new string(' ', spaces) + line));
}
