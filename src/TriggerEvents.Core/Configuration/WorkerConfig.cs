namespace TriggerEvents.Core.Configuration;

/// <summary><c>worker:</c>: how each worker process claims and delivers (SPEC "Worker"). Every key is optional.</summary>
internal sealed record WorkerConfig
{
    /// <summary>Default for <see cref="Group"/>.</summary>
    public const string DefaultGroup = "default";

    /// <summary>Default for <see cref="BatchSize"/>.</summary>
    public const int DefaultBatchSize = 100;

    /// <summary>Default for <see cref="PollInterval"/>.</summary>
    public static readonly TimeSpan DefaultPollInterval = TimeSpan.FromSeconds(1);

    /// <summary>Default for <see cref="Lease"/>.</summary>
    public static readonly TimeSpan DefaultLease = TimeSpan.FromSeconds(60);

    /// <summary>Default for <see cref="HttpPort"/>.</summary>
    public const int DefaultHttpPort = 8080;

    /// <summary>Default for <see cref="ShutdownTimeout"/>.</summary>
    public static readonly TimeSpan DefaultShutdownTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Default for <see cref="Concurrency"/>.</summary>
    public const int DefaultConcurrency = 64;

    /// <summary>Default for <see cref="MetricsInterval"/>.</summary>
    public static readonly TimeSpan DefaultMetricsInterval = TimeSpan.FromSeconds(15);

    /// <summary>Default for <see cref="SummaryInterval"/>.</summary>
    public static readonly TimeSpan DefaultSummaryInterval = TimeSpan.FromMinutes(1);

    /// <summary>Default for <see cref="BodyMemory"/>: 64 MiB.</summary>
    public const long DefaultBodyMemory = 64L << 20;

    /// <summary>
    /// <c>group</c>: the group this file's subscriptions belong to. A worker registers, updates
    /// and pauses only its own group's subscriptions, and refuses a name another group owns.
    /// </summary>
    public string Group { get; init; } = DefaultGroup;

    /// <summary><c>batch_size</c>: most deliveries claimed in one round trip.</summary>
    public int BatchSize { get; init; } = DefaultBatchSize;

    /// <summary><c>poll_interval</c>: how long an idle worker waits before looking again when no NOTIFY wakes it.</summary>
    public TimeSpan PollInterval { get; init; } = DefaultPollInterval;

    /// <summary>
    /// <c>lease</c>: how long a claim is held before another worker may take it over. Longer than every
    /// subscription's <c>webhook.timeout</c>, so that a slow request is not delivered twice.
    /// </summary>
    public TimeSpan Lease { get; init; } = DefaultLease;

    /// <summary><c>http_port</c>: the port of <c>/healthz</c>, <c>/readyz</c> and <c>/metrics</c>.</summary>
    public int HttpPort { get; init; } = DefaultHttpPort;

    /// <summary>
    /// <c>console_port</c>: when not 0, this worker also serves the web console on
    /// 127.0.0.1 at this port (loopback only; <c>triggerevents console</c> serves other addresses).
    /// 0, the default, serves none.
    /// </summary>
    public int ConsolePort { get; init; }

    /// <summary><c>shutdown_timeout</c>: on SIGTERM, how long to finish requests in flight before releasing them.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = DefaultShutdownTimeout;

    /// <summary><c>concurrency</c>: HTTP requests in flight in one worker process, over all subscriptions.</summary>
    public int Concurrency { get; init; } = DefaultConcurrency;

    /// <summary>
    /// <c>metrics_interval</c>: how often the backlog gauges (pending, oldest pending age, dead)
    /// are read from the database, by the one replica that reports them. Counting a large backlog
    /// costs a scan of the pending deliveries, so this is not every scrape.
    /// </summary>
    public TimeSpan MetricsInterval { get; init; } = DefaultMetricsInterval;

    /// <summary><c>summary_interval</c>: how often the worker logs what it delivered since the last summary.</summary>
    public TimeSpan SummaryInterval { get; init; } = DefaultSummaryInterval;

    /// <summary>
    /// <c>deny_private_networks</c>: when true, the worker refuses to connect to any address that is not
    /// public (loopback, RFC 1918 and unique-local, link-local with the cloud metadata endpoints,
    /// carrier-grade NAT, unspecified, multicast, reserved; see <c>PrivateAddress</c>), checked on the
    /// address it is about to connect to, after DNS; such a delivery is dead at once with the reason.
    /// Proxies from the environment are then not used, since the worker must connect itself to check.
    /// Off by default: any URL a subscription names is called.
    /// </summary>
    public bool DenyPrivateNetworks { get; init; }

    /// <summary>
    /// <c>body_memory</c>: how many bytes of large request bodies (those of events over 64 KiB)
    /// one worker process holds at once, over all its requests; a large event waits for room
    /// before it is read from the database. With <see cref="Concurrency"/> it bounds the worker's
    /// memory whatever the data (README, "Guarantees"). At least every subscription's
    /// <c>max_event_bytes</c>. Default <see cref="DefaultBodyMemory"/>.
    /// </summary>
    public long BodyMemory { get; init; } = DefaultBodyMemory;
}
