namespace TriggerEvents.Postgres.Delivery;

/// <summary>Where a delivery goes after an attempt.</summary>
internal enum DeliveryResultKind
{
    /// <summary>The target has it.</summary>
    Delivered,

    /// <summary>Failed; due again after <see cref="DeliveryResult.RetryDelay"/>.</summary>
    Retry,

    /// <summary>No more attempts.</summary>
    Dead,
}

/// <summary>The outcome of one attempt, as recorded in the delivery row and the attempt log.</summary>
internal sealed record DeliveryResult(
    DeliveryKey Key,
    int Attempt,
    DeliveryResultKind Kind,
    TimeSpan RetryDelay,
    int? HttpStatus,
    string? Error,
    DateTimeOffset StartedAt,
    TimeSpan Duration,
    string? ResponseExcerpt)
{
    /// <summary>What the attempt tells its subscription's breaker and hold (SPEC "Protecting targets"); null: nothing.</summary>
    public TargetSignal? Target { get; init; }

    /// <summary>The webhook-id of the batch request the attempt was part of; null for a single event's, which its id gives.</summary>
    public string? WebhookId { get; init; }

    /// <summary>
    /// Of a batch the target refused as too large (HTTP 413), split in two: the batch this
    /// delivery goes in from now on (its first event's id). The attempt is given back, since the
    /// target took none of the request: each half starts where the whole one did.
    /// </summary>
    public long? SplitInto { get; init; }

    /// <summary>Of a delivery with a key (<c>ordering: key</c>): finishing it hands its key on to the next (<see cref="KeyOrdering.HandOffSql"/>).</summary>
    public bool Keyed { get; init; }

    /// <summary>
    /// Of a key's run, not its last, and finished: the run's next delivery is already this
    /// worker's, so nothing waits for this write, which may wait to go with the run's later
    /// results (the worker's result writer).
    /// </summary>
    public bool MayWait { get; init; }
}
