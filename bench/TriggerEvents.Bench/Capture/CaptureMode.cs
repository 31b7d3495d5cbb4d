namespace TriggerEvents.Bench.Capture;

/// <summary>
/// One write configuration measured by the capture benchmark: which table is written and, for
/// the attached table, how its wake-up is set and how many subscriptions its trigger has.
/// </summary>
/// <param name="Label">How the figures are labelled.</param>
/// <param name="Table">The table pgbench and the bulk insert write to.</param>
/// <param name="Notify">The attach's notify flag; null for tables not attached by TriggerEvents.</param>
/// <param name="WorkerIdle">
/// worker_signal.idle set at the start of the run and armed again every
/// <see cref="ThroughputBenchmark.RearmInterval"/> while it runs, as a worker that drains each
/// wake-up at once and goes idle again would (only read when Notify is on).
/// </param>
/// <param name="Subscriptions">Subscriptions of the attached trigger during the run.</param>
/// <param name="Variant">What the attached trigger's capture does besides the shipped default.</param>
internal sealed record CaptureMode(string Label, string Table, bool? Notify, bool WorkerIdle, int Subscriptions = 1,
    CaptureVariant Variant = CaptureVariant.Shipped)
{
    public static readonly CaptureMode Plain =
        new("plain table", OrdersSchema.PlainTable, Notify: null, WorkerIdle: false);

    /// <summary>The peer: Hasura's event-trigger capture, reconstructed (Capture/Peers/hasura-capture.sql).</summary>
    public static readonly CaptureMode Hasura =
        new("Hasura-shaped row trigger", OrdersSchema.HasuraTable, Notify: null, WorkerIdle: false);

    public static readonly CaptureMode NotifyWorkerBusy =
        new("attached, 1 subscription, worker busy", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: false);

    public static readonly CaptureMode TenSubscriptionsWorkerBusy =
        new("attached, 10 subscriptions, worker busy", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: false, Subscriptions: 10);

    public static readonly CaptureMode NotifyOff =
        new("attached, notify off", OrdersSchema.AttachedTable, Notify: false, WorkerIdle: true);

    public static readonly CaptureMode NotifyWorkerIdle =
        new("attached, worker idle, re-armed (NOTIFY)", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: true);

    /// <summary>What the check of who fired the capture function costs: the same, with the check cut out.</summary>
    public static readonly CaptureMode WithoutGuard =
        new("attached, busy, guard cut out", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: false, Variant: CaptureVariant.WithoutGuard);

    /// <summary>What a condition costs (its subtransaction included): one that is always true.</summary>
    public static readonly CaptureMode Condition =
        new("attached, busy, with a condition", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: false, Variant: CaptureVariant.Condition);

    /// <summary>Payload columns as shipped: kept by attribute number, the others' names read per statement.</summary>
    public static readonly CaptureMode PayloadColumns =
        new("attached, busy, payload columns", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: false, Variant: CaptureVariant.PayloadColumns);

    /// <summary>
    /// Payload columns that leave a text column out (status): capture empties it before it
    /// converts the row (migration 000023), reading the columns' types per statement.
    /// </summary>
    public static readonly CaptureMode PayloadColumnsTextLeftOut =
        new("attached, busy, payload columns, text left out", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: false, Variant: CaptureVariant.PayloadColumnsTextLeftOut);

    /// <summary>The same payload columns compiled in by name, as before schema changes were followed.</summary>
    public static readonly CaptureMode PayloadColumnsByName =
        new("attached, busy, payload columns by name", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: false, Variant: CaptureVariant.PayloadColumnsByName);

    /// <summary>Plain first: it is the baseline every ratio divides by.</summary>
    public static IReadOnlyList<CaptureMode> All { get; } =
        [Plain, Hasura, NotifyWorkerBusy, TenSubscriptionsWorkerBusy, NotifyOff, NotifyWorkerIdle,
         WithoutGuard, Condition, PayloadColumns, PayloadColumnsTextLeftOut, PayloadColumnsByName];

    public bool IsAttached => Notify is not null;

    public bool IsPeer => this == Hasura;

    /// <summary>Capture may send wake-ups during the run.</summary>
    public bool MayNotify => Notify == true && WorkerIdle;
}

/// <summary>
/// The attached trigger's capture in a run. The variants that are not shipped rewrite the
/// generated function's source after attach, to measure what one of its parts costs.
/// </summary>
internal enum CaptureVariant
{
    Shipped,
    WithoutGuard,
    Condition,
    PayloadColumns,
    PayloadColumnsTextLeftOut,
    PayloadColumnsByName,
}
