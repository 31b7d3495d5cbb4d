using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using Prometheus;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Operations;
using TriggerEvents.Worker.Delivery;

namespace TriggerEvents.Worker.Maintenance;

/// <summary>
/// The worker's background duties besides delivery, each on its own timer: backlog gauges for
/// <c>/metrics</c> (one replica of each group at a time), a summary of deliveries in the log, retention (one
/// worker at a time database-wide) and the pruning of the rates' counts. A failing duty logs and tries again at its next tick.
/// </summary>
internal sealed class MaintenanceDuties(
    TriggerEventsConfig config, NpgsqlDataSource dataSource, WorkerMetrics metrics, TimeProvider time, ILogger logger)
{
    private readonly Dictionary<(string Subscription, string Outcome), double> summarized = [];

    public async Task RunAsync(CancellationToken stopping)
    {
        await using var reporter = new BacklogReporter(dataSource, config.Worker.Group);
        await Task.WhenAll(
            EveryAsync(config.Worker.MetricsInterval, c => UpdateGaugesAsync(reporter, c), "backlog gauges", stopping),
            EveryAsync(config.Worker.SummaryInterval, SummarizeAsync, "delivery summary", stopping, skipFirst: true),
            EveryAsync(config.Retention.CleanupInterval, CleanUpAsync, "retention", stopping),
            EveryAsync(AttemptCounts.PruneInterval, c => AttemptCounts.PruneAsync(dataSource, c), "pruning attempt counts", stopping, skipFirst: true));
    }

    private async Task CleanUpAsync(CancellationToken cancellationToken)
    {
        if (config.Retention.DeliveredEvents is null && config.Retention.Attempts is null)
        {
            return;
        }

        var result = await Retention.RunOnceAsync(
            dataSource, config.Retention.DeliveredEvents, config.Retention.Attempts, config.Worker.Group, null, cancellationToken);
        if (result.Events + result.Attempts > 0)
        {
            logger.LogInformation(
                "Retention deleted {Events} delivered events, {Deliveries} deliveries and {Attempts} attempt records",
                result.Events, result.Deliveries, result.Attempts);
        }
    }

    private async Task UpdateGaugesAsync(BacklogReporter reporter, CancellationToken cancellationToken)
    {
        try
        {
            await ReportBacklogAsync(reporter, cancellationToken);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            // Figures that could not be read are not left standing as if they were current:
            // frozen at their last values they hid a growing backlog, and once another replica
            // took the lock over (this one cut off from the database, its lock gone with its
            // session) both were counted.
            ClearBacklog();
            throw;
        }
    }

    private void ClearBacklog()
    {
        metrics.BacklogReporter.Set(0);
        Clear(metrics.Pending);
        Clear(metrics.OldestPendingAge);
        Clear(metrics.Dead);
        Clear(metrics.SubscriptionState);
        Clear(metrics.TriggerHealth);
    }

    private async Task ReportBacklogAsync(BacklogReporter reporter, CancellationToken cancellationToken)
    {
        if (!await reporter.HoldsAsync(cancellationToken))
        {
            // Another replica reports the database's backlog; a copy here would be counted twice
            // by every sum() over replicas.
            ClearBacklog();
            return;
        }

        metrics.BacklogReporter.Set(1);
        // Every subscription of this worker's group, paused ones included: a paused
        // subscription's growing backlog is what an operator must see. One replica of the group
        // reports; other groups' workers report theirs.
        var statuses = await StatusQueries.GetSubscriptionStatusAsync(dataSource, config.Worker.Group, cancellationToken);
        Clear(metrics.Pending);
        Clear(metrics.OldestPendingAge);
        Clear(metrics.Dead);
        Clear(metrics.SubscriptionState);
        foreach (var status in statuses)
        {
            metrics.Pending.WithLabels(status.Subscription).Set(status.Pending + status.Retrying);
            metrics.OldestPendingAge.WithLabels(status.Subscription).Set(status.OldestPendingAgeSeconds ?? 0);
            metrics.Dead.WithLabels(status.Subscription).Set(status.Dead);
            // An active subscription whose circuit is not closed sends nothing (or one probe).
            var current = status.State == "active" && status.Circuit != "closed" ? "circuit_open" : status.State;
            foreach (var state in WorkerMetrics.SubscriptionStates)
            {
                metrics.SubscriptionState.WithLabels(status.Subscription, state).Set(current == state ? 1 : 0);
            }
        }

        // The event triggers the group's subscriptions listen to: a trigger that stopped capturing
        // is a problem for whoever relies on it. Not part of /readyz, which is about this worker.
        var listenedTo = statuses.Select(status => status.TriggerName).ToHashSet(StringComparer.Ordinal);
        var triggers = (await EventTriggerAdmin.ListAsync(dataSource, cancellationToken)).Where(trigger => listenedTo.Contains(trigger.Name));
        Clear(metrics.TriggerHealth);
        foreach (var trigger in triggers)
        {
            foreach (var state in EventTriggerAdmin.HealthStates)
            {
                metrics.TriggerHealth.WithLabels(trigger.Name, state).Set(trigger.Health == state ? 1 : 0);
            }
        }
    }

    private static void Clear(Gauge gauge)
    {
        foreach (var labels in gauge.GetAllLabelValues().ToList())
        {
            gauge.RemoveLabelled(labels);
        }
    }

    /// <summary>
    /// One information line per interval with what this replica delivered since the last one, so
    /// that a healthy worker's log shows it is working (failures are logged one by one anyway).
    /// </summary>
    private Task SummarizeAsync(CancellationToken cancellationToken)
    {
        var counts = new Dictionary<(string Subscription, string Outcome), long>();
        foreach (var labels in metrics.Deliveries.GetAllLabelValues())
        {
            var key = (labels[0], labels[1]);
            var value = metrics.Deliveries.WithLabels(labels).Value;
            counts[key] = (long)(value - summarized.GetValueOrDefault(key));
            summarized[key] = value;
        }

        long Total(string outcome) => counts.Where(c => c.Key.Outcome == outcome).Sum(c => c.Value);
        var perSubscription = counts
            .Where(c => c.Value > 0)
            .GroupBy(c => c.Key.Subscription)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => string.Create(CultureInfo.InvariantCulture, $"{g.Key}: {string.Join(", ", g.OrderBy(c => c.Key.Outcome, StringComparer.Ordinal).Select(c => $"{c.Value} {c.Key.Outcome}"))}"));
        logger.LogInformation(
            "In the last {Interval}: {Delivered} delivered, {Retried} failed attempts to retry, {Dead} dead{Detail}",
            Duration.Format(config.Worker.SummaryInterval), Total("delivered"), Total("retry"), Total("dead"),
            string.Join("; ", perSubscription) is { Length: > 0 } detail ? $" ({detail})" : "");
        return Task.CompletedTask;
    }

    private async Task EveryAsync(TimeSpan interval, Func<CancellationToken, Task> duty, string name, CancellationToken stopping, bool skipFirst = false)
    {
        using var timer = new PeriodicTimer(interval, time);
        try
        {
            if (skipFirst && !await timer.WaitForNextTickAsync(stopping))
            {
                return;
            }

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
