namespace TriggerEvents.Core.Configuration;

/// <summary>
/// One webhook subscribed to one event trigger (an item of <c>subscriptions:</c>).
/// </summary>
internal sealed record SubscriptionConfig
{
    /// <summary>Longest name accepted: PostgreSQL's identifier limit, so a name fits wherever the database keeps it.</summary>
    public const int MaxNameLength = 63;

    /// <summary>Default for <see cref="MaxInFlight"/>.</summary>
    public const int DefaultMaxInFlight = 16;

    /// <summary>Default for <see cref="MaxEventBytes"/>: 4 MiB.</summary>
    public const long DefaultMaxEventBytes = 4L << 20;

    /// <summary>Least <see cref="MaxEventBytes"/>: below it the body's own fields would not fit.</summary>
    public const long MinMaxEventBytes = 1L << 10;

    /// <summary>Most <see cref="MaxEventBytes"/>: PostgreSQL's limit for one value.</summary>
    public const long MaxMaxEventBytes = 1L << 30;

    /// <summary>
    /// <c>name</c>: unique in the file (ignoring case), letters, digits, <c>-</c> and <c>_</c>, at most
    /// <see cref="MaxNameLength"/> characters. Delivery state is keyed by it: renaming a subscription
    /// makes a new one.
    /// </summary>
    public required string Name { get; init; }

    /// <summary><c>trigger</c>: the event trigger (as attached with <c>trigger_events.attach</c>) whose events this subscription receives.</summary>
    public required string Trigger { get; init; }

    /// <summary><c>operations</c>: which operations are delivered, a subset of <see cref="EventOperations.All"/> (the default).</summary>
    public IReadOnlySet<string> Operations { get; init; } = EventOperations.All;

    /// <summary><c>start_from</c>: where a new subscription begins in the event log; <see cref="StartFrom.Now"/> by default.</summary>
    public StartFrom StartFrom { get; init; } = new StartFrom.Now();

    /// <summary><c>webhook</c>: where and how events are posted.</summary>
    public required WebhookConfig Webhook { get; init; }

    /// <summary><c>retry</c>: how failed deliveries are retried.</summary>
    public RetryConfig Retry { get; init; } = new();

    /// <summary>
    /// <c>max_in_flight</c>: most requests to this webhook at once, across all worker replicas together;
    /// default <see cref="DefaultMaxInFlight"/>.
    /// </summary>
    public int MaxInFlight { get; init; } = DefaultMaxInFlight;

    /// <summary>
    /// <c>max_event_bytes</c>: the largest request body one event may make (its rows, session
    /// variables and the fields around them); a larger event is dead-lettered with its size as the
    /// reason, without the worker ever reading it. Default <see cref="DefaultMaxEventBytes"/>.
    /// </summary>
    public long MaxEventBytes { get; init; } = DefaultMaxEventBytes;

    /// <summary>
    /// <c>ordering: key</c> (with <c>ordering_key</c>): one event of a key in flight at a time, in
    /// commit order. Null: <c>ordering: none</c>, the default.
    /// </summary>
    public OrderingConfig? Ordering { get; init; }

    /// <summary><c>batch</c>: several events per request; null (the default) for one event per request.</summary>
    public BatchConfig? Batch { get; init; }

    /// <summary><c>rate_limit</c>: requests per second across all replicas together; null (the default) for none.</summary>
    public RateLimit? RateLimit { get; init; }

    /// <summary><c>circuit_breaker</c>: null (the default) for none.</summary>
    public CircuitBreakerConfig? CircuitBreaker { get; init; }

    /// <summary>Where the subscription's item starts in the file.</summary>
    public ConfigLocation? Location { get; init; }

    /// <summary>Where the <c>trigger</c> value is, for "not attached" errors found against the database.</summary>
    public ConfigLocation? TriggerLocation { get; init; }
}
