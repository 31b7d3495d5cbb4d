using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using TriggerEvents.Worker.Delivery.Targets;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Worker.Delivery;
using TriggerEvents.Worker.Maintenance;
using TriggerEvents.Worker.Signals;

namespace TriggerEvents.Worker.Hosting;

/// <summary>
/// <c>triggerevents run</c>: checks the schema, registers the file's subscriptions, then runs
/// the listener, the delivery loop and the maintenance duties until the host stops.
/// </summary>
internal sealed class WorkerService(
    TriggerEventsConfig config,
    NpgsqlDataSource dataSource,
    WorkerMetrics metrics,
    WorkerHealth health,
    TimeProvider time,
    ILoggerFactory loggerFactory,
    IHostApplicationLifetime lifetime) : BackgroundService
{
    /// <summary>How often a worker waiting for migrate looks at the schema version again.</summary>
    private static readonly TimeSpan SchemaCheckInterval = TimeSpan.FromSeconds(2);

    private readonly ILogger logger = loggerFactory.CreateLogger("TriggerEvents.Worker");

    /// <summary>Set when the worker stopped because of an error: the process exits 1.</summary>
    public Exception? Failure { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await RunAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping before start-up finished.
        }
        catch (Exception e)
        {
            Failure = e;

            // One line that says what to do; the stack trace only for --verbose (debug level).
            var message = e switch
            {
                PostgresException pg when DatabaseProblems.IsSchemaMissing(pg) =>
                    await DatabaseProblems.DescribeSchemaProblemAsync(dataSource, pg, CancellationToken.None) ?? pg.MessageText,
                PostgresException pg when DatabaseProblems.IsPermissionDenied(pg) =>
                    await DatabaseProblems.DescribePermissionAsync(dataSource, pg, CancellationToken.None),
                PostgresException pg when DatabaseProblems.IsReadOnly(pg) => DatabaseProblems.DescribeReadOnly(pg),
                PostgresException pg => $"{pg.MessageText} ({pg.SqlState})",
                _ => e.Message,
            };
            logger.LogCritical("The worker stopped: {Error}", message.ReplaceLineEndings(" "));
            logger.LogDebug(e, "The worker stopped");
            // Once the host has started: a failure found while it was still starting its other
            // services (a configuration error found at once) stopped it mid-start, which it
            // reports as cancelled, and the process exited 1 with "cancelled" instead of 2.
            lifetime.ApplicationStarted.Register(lifetime.StopApplication);
        }
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        health.Waiting = true;
        var version = await WaitForDatabaseAsync(stoppingToken);
        if (!version.IsCurrent && version.Database < version.Binary)
        {
            version = await WaitForSchemaAsync(version, stoppingToken);
        }

        if (version.Database > version.Binary)
        {
            if (!version.IsNewerAndRunsThisBinary)
            {
                throw new SchemaTooNewException(version);
            }

            // A rollout under way (this worker restarted after the next release's migrate), or a
            // rollback: the newer migrations declare that they keep this release's workers working.
            logger.LogWarning(
                "The schema is at version {Database}, newer than this worker's {Binary}; its migrations keep workers of version {WorkersFrom} and later working, so this one runs. Replace it with the newer release",
                version.Database, version.Binary, version.WorkersFrom);
        }

        if (version.Database >= Migrator.MovesVersion)
        {
            await RefuseMovedDatabaseAsync(stoppingToken);
        }

        await WorkerConnection.RequireReadCommittedAsync(dataSource, stoppingToken);
        var registered = await new SubscriptionRegistry(dataSource).SyncAsync(config.Worker.Group, config.Subscriptions, stoppingToken);
        await GroupRetention.RecordAsync(dataSource, config.Worker.Group, config.Retention, stoppingToken);
        foreach (var subscription in registered)
        {
            if (!subscription.TriggerAttached)
            {
                logger.LogWarning("Subscription {Subscription} listens to trigger {Trigger}, which is not attached yet", subscription.Config.Name, subscription.Config.Trigger);
            }

            if (subscription.Backfilled > 0)
            {
                logger.LogInformation("Subscription {Subscription} backfilled with {Count} events", subscription.Config.Name, subscription.Backfilled);
            }
        }

        var clients = registered.Select(s => new ActiveSubscription(
            s.Id,
            s.Config,
            new WebhookTarget(s.Config, Math.Min(s.Config.MaxInFlight, config.Worker.Concurrency), time, config.Worker.DenyPrivateNetworks),
            new RetryPolicy(s.Config.Retry))).ToList();
        try
        {
            var wake = new WakeSignal();
            var store = new DeliveryStore(dataSource)
            {
                ProtectedSubscriptions = TargetProtection.ProtectedIds(clients),
                BatchedSubscriptions = clients.Where(c => c.Config.Batch is not null).ToDictionary(c => c.Id, c => c.Config.Batch!.MaxEvents),
                OrderedSubscriptions = clients.Where(c => c.Config.Ordering is not null).Select(c => c.Id).ToHashSet(),
            };
            var worker = new DeliveryWorker(config.Worker, clients, store, wake, time, logger, metrics);
            var listener = new NotificationListener(dataSource, wake, time, logger);
            var duties = new MaintenanceDuties(config, dataSource, metrics, time, logger);
            health.StallAfter = TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(30).Ticks, config.Worker.PollInterval.Ticks * 5));
            health.MarkStarted(() => worker.LastLoopAt);
            logger.LogInformation(
                "Worker {Owner} of group {Group} delivering {Count} subscriptions: {Subscriptions}",
                worker.Owner, config.Worker.Group, clients.Count, string.Join(", ", clients.Select(c => c.Name)));
            if (config.Worker.DenyPrivateNetworks)
            {
                logger.LogInformation("worker.deny_private_networks is on: deliveries to private, loopback and link-local addresses are refused and dead at once; proxies from the environment are not used");
            }

            using var stopBackground = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            var listening = listener.RunAsync(stopBackground.Token);
            var maintenance = duties.RunAsync(stopBackground.Token);
            try
            {
                await worker.RunAsync(stoppingToken);
            }
            finally
            {
                await stopBackground.CancelAsync();
                await Task.WhenAll(listening, maintenance);
            }

            logger.LogInformation("Worker {Owner} stopped", worker.Owner);
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Target.Dispose();
            }
        }
    }

    /// <summary>
    /// A database moved here by a logical dump or logical replication keeps the places of the
    /// database it came from: fanning out from them, or running retention, would leave events
    /// of this server's transactions undelivered. migrate repairs it first.
    /// </summary>
    private async Task RefuseMovedDatabaseAsync(CancellationToken stoppingToken)
    {
        await using var command = dataSource.CreateCommand("SELECT trigger_events.moved_reason()");
        if (await command.ExecuteScalarAsync(stoppingToken) is string reason)
        {
            throw new InvalidOperationException(
                $"This database's trigger_events state was made elsewhere: {reason}. Run 'triggerevents migrate', which repairs it, then start the worker again.");
        }
    }

    /// <summary>
    /// Waits, alive and not ready, until the schema is migrated to this binary's version: a
    /// release's workers may start before its migrate job has finished. Says so once.
    /// </summary>
    private async Task<SchemaVersion> WaitForSchemaAsync(SchemaVersion version, CancellationToken stoppingToken)
    {
        logger.LogWarning(
            "Waiting for the schema: {Problem}; checking every {Interval}",
            version.Database == 0
                ? $"the trigger_events schema is not installed in this database, {DatabaseProblems.RunMigrate}"
                : $"this database's trigger_events schema is at version {version.Database}, this triggerevents needs {version.Binary}, {DatabaseProblems.RunMigrate}",
            Duration.Format(SchemaCheckInterval));
        while (!version.IsCurrent && version.Database < version.Binary)
        {
            await Task.Delay(SchemaCheckInterval, time, stoppingToken);
            version = await WaitForDatabaseAsync(stoppingToken);
        }

        logger.LogInformation("The schema is at version {Version}", version.Database);
        return version;
    }

    /// <summary>Waits for the database to answer at start-up, retrying with backoff.</summary>
    private async Task<SchemaVersion> WaitForDatabaseAsync(CancellationToken stoppingToken)
    {
        for (var failures = 1; ; failures++)
        {
            try
            {
                return await Migrator.GetVersionAsync(dataSource, stoppingToken);
            }
            // Only what may pass is waited out (no connection, a server starting or shutting down):
            // a wrong password, a missing database or a missing grant will not fix itself.
            catch (Exception e) when (e is NpgsqlException { IsTransient: true } or TimeoutException && failures < 30)
            {
                var delay = ReconnectBackoff.Delay(failures);
                logger.LogWarning("Database not reachable, retrying in {Delay}: {Error}", delay, e.Message);
                await Task.Delay(delay, time, stoppingToken);
            }
        }
    }
}
