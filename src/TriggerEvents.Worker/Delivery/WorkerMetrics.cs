using Prometheus;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The delivery metrics of SPEC.md "Worker", prefix <c>triggerevents_</c>. Backlog gauges
/// (pending, oldest pending age, dead) are set from the database by the maintenance duties.
/// </summary>
internal sealed class WorkerMetrics
{
    public WorkerMetrics(CollectorRegistry registry)
    {
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
        Pending = factory.CreateGauge("triggerevents_pending_deliveries", "Deliveries waiting or retrying.", "subscription");
        OldestPendingAge = factory.CreateGauge("triggerevents_oldest_pending_age_seconds",
            "Age of the oldest event still waiting for delivery.", "subscription");
        Dead = factory.CreateGauge("triggerevents_dead_deliveries", "Dead-lettered deliveries.", "subscription");
        BuildInfo = factory.CreateGauge("triggerevents_build_info", "Always 1; the version label says which build runs.", "version");
        BuildInfo.WithLabels(WebhookClient.UserAgent.Split('/')[1]).Set(1);
    }

    public Counter Deliveries { get; }

    public Histogram DeliveryDuration { get; }

    public Histogram EndToEndLatency { get; }

    public Counter LeasesExpired { get; }

    public Gauge Pending { get; }

    public Gauge OldestPendingAge { get; }

    public Gauge Dead { get; }

    public Gauge BuildInfo { get; }
}
