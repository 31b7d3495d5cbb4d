using Prometheus;
using TriggerEvents.Worker.Delivery.Targets;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The delivery metrics of SPEC.md "Worker", prefix <c>triggerevents_</c>. Counters and
/// histograms are this replica's own and add up across replicas. The backlog gauges (pending,
/// oldest pending age, dead) describe the worker's group: the maintenance duties set them on one
/// replica of the group at a time (<see cref="BacklogReporter"/> is 1 there), so a <c>sum()</c>
/// over replicas counts each delivery once.
/// </summary>
internal sealed class WorkerMetrics
{
    /// <summary>The states of <c>subscription_state</c>; circuit_open is set by circuit breakers.</summary>
    public static readonly string[] SubscriptionStates = ["active", "paused", "circuit_open"];

    public WorkerMetrics(CollectorRegistry registry, TimeSpan? backlogInterval = null)
    {
        var every = $"read from the database every {Core.Configuration.Duration.Format(backlogInterval ?? Core.Configuration.WorkerConfig.DefaultMetricsInterval)} (worker.metrics_interval) by one replica of the group at a time";
        var factory = Metrics.WithCustomRegistry(registry);
        Deliveries = factory.CreateCounter("triggerevents_deliveries_total",
            "Delivery attempts by outcome: delivered, retry, dead.", "subscription", "outcome");
        DeliveryDuration = factory.CreateHistogram("triggerevents_delivery_duration_seconds",
            "Duration of webhook requests.", new HistogramConfiguration
            {
                LabelNames = ["subscription"],
                Buckets = Histogram.ExponentialBuckets(0.001, 2, 16),
            });
        EndToEndLatency = factory.CreateHistogram("triggerevents_end_to_end_latency_seconds",
            "From capture to a 2xx from the webhook.", new HistogramConfiguration
            {
                LabelNames = ["subscription"],
                Buckets = Histogram.ExponentialBuckets(0.001, 2, 20),
            });
        LeasesExpired = factory.CreateCounter("triggerevents_leases_expired_total",
            "Deliveries taken over from a worker whose lease expired (a crash or a stall).");
        Pending = factory.CreateGauge("triggerevents_pending_deliveries", $"Deliveries waiting or retrying; {every}.", "subscription");
        OldestPendingAge = factory.CreateGauge("triggerevents_oldest_pending_age_seconds",
            $"Age of the oldest event still waiting for delivery; {every}.", "subscription");
        Dead = factory.CreateGauge("triggerevents_dead_deliveries", $"Dead-lettered deliveries; {every}.", "subscription");
        SubscriptionState = factory.CreateGauge("triggerevents_subscription_state",
            $"1 for each subscription's current state (active, paused, circuit_open), 0 for the others; {every}.",
            "subscription", "state");
        TriggerHealth = factory.CreateGauge("triggerevents_trigger_health",
            $"1 for each attached event trigger's current state (ok, missing, disabled, outdated), 0 for the others; {every}.",
            "trigger", "state");
        RateLimited = factory.CreateCounter("triggerevents_rate_limited_total",
            "Claims that left due deliveries waiting because the subscription's rate_limit had no budget left.", "subscription");
        CircuitOpens = factory.CreateCounter("triggerevents_circuit_opens_total",
            "Times this replica's results opened a subscription's circuit breaker (a failed probe included).", "subscription");
        BacklogReporter = factory.CreateGauge("triggerevents_backlog_reporter",
            "1 on the one replica of its group that exports the group's backlog gauges, 0 on the others.");
        BuildInfo = factory.CreateGauge("triggerevents_build_info", "Always 1; the version label says which build runs.", "version");
        BuildInfo.WithLabels(WebhookTarget.UserAgent.Split('/')[1]).Set(1);
    }

    public Counter Deliveries { get; }

    public Histogram DeliveryDuration { get; }

    public Histogram EndToEndLatency { get; }

    public Counter LeasesExpired { get; }

    public Gauge Pending { get; }

    public Gauge OldestPendingAge { get; }

    public Gauge Dead { get; }

    public Gauge SubscriptionState { get; }

    public Gauge TriggerHealth { get; }

    public Counter RateLimited { get; }

    public Counter CircuitOpens { get; }

    public Gauge BacklogReporter { get; }

    public Gauge BuildInfo { get; }
}
