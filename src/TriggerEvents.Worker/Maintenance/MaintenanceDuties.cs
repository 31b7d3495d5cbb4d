using Microsoft.Extensions.Logging;
using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Worker.Delivery;

namespace TriggerEvents.Worker.Maintenance;

/// <summary>
/// The worker's background duties besides delivery, each on its own timer: backlog gauges for
/// <c>/metrics</c>, and retention (one worker at a time database-wide). A failing duty logs and
/// tries again at its next tick.
/// </summary>
internal sealed class MaintenanceDuties(
    TriggerEventsConfig config, NpgsqlDataSource dataSource, WorkerMetrics metrics, TimeProvider time, ILogger logger)
{
    /// <summary>How often the backlog gauges are read from the database.</summary>
    // Counting a large backlog costs the database a scan of the pending deliveries; every 15 s
    // is plenty for alerting and keeps that cost small next to delivery itself.
    public static readonly TimeSpan GaugeInterval = TimeSpan.FromSeconds(15);

    public Task RunAsync(CancellationToken stopping) => Task.WhenAll(
        EveryAsync(GaugeInterval, UpdateGaugesAsync, "backlog gauges", stopping),
        EveryAsync(config.Retention.CleanupInterval, CleanUpAsync, "retention", stopping));

    private async Task CleanUpAsync(CancellationToken cancellationToken)
    {
        var result = await Retention.RunOnceAsync(dataSource, config.Retention.DeliveredEvents, config.Retention.Attempts, null, cancellationToken);
        if (result.Events + result.Attempts > 0)
        {
            logger.LogInformation(
                "Retention deleted {Events} delivered events, {Deliveries} deliveries and {Attempts} attempt records",
                result.Events, result.Deliveries, result.Attempts);
        }
    }

    private async Task UpdateGaugesAsync(CancellationToken cancellationToken)
    {
        var statuses = await StatusQueries.GetSubscriptionStatusAsync(dataSource, cancellationToken);
        foreach (var status in statuses.Where(s => config.Subscriptions.Any(c => c.Name == s.Subscription)))
        {
            metrics.Pending.WithLabels(status.Subscription).Set(status.Pending + status.Retrying);
            metrics.OldestPendingAge.WithLabels(status.Subscription).Set(status.OldestPendingAgeSeconds ?? 0);
            metrics.Dead.WithLabels(status.Subscription).Set(status.Dead);
        }
    }

    private async Task EveryAsync(TimeSpan interval, Func<CancellationToken, Task> duty, string name, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(interval, time);
        try
        {
            do
            {
                try
                {
                    await duty(stopping);
                }
                catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
                {
                    logger.LogWarning("Maintenance duty {Duty} failed: {Error}", name, e.Message);
                }
            }
            while (await timer.WaitForNextTickAsync(stopping));
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }
}
