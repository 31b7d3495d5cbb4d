namespace TriggerEvents.Bench.Capture;

/// <summary>
/// One write configuration measured by the capture benchmark: which table is written and, for
/// the attached table, how its wake-up is set.
/// </summary>
/// <param name="Label">How the figures are labelled.</param>
/// <param name="Table">The table pgbench and the bulk insert write to.</param>
/// <param name="Notify">The attach's notify flag; null for the plain table.</param>
/// <param name="WorkerIdle">worker_signal.idle held during the run (only read when Notify is on).</param>
internal sealed record CaptureMode(string Label, string Table, bool? Notify, bool WorkerIdle)
{
    public static readonly CaptureMode Plain =
        new("plain table", OrdersSchema.PlainTable, Notify: null, WorkerIdle: false);

    public static readonly CaptureMode NotifyOff =
        new("attached, notify off", OrdersSchema.AttachedTable, Notify: false, WorkerIdle: true);

    public static readonly CaptureMode NotifyWorkerBusy =
        new("attached, notify on, worker busy", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: false);

    public static readonly CaptureMode NotifyWorkerIdle =
        new("attached, notify on, worker idle held", OrdersSchema.AttachedTable, Notify: true, WorkerIdle: true);

    /// <summary>Plain first: it is the baseline every ratio divides by.</summary>
    public static IReadOnlyList<CaptureMode> All { get; } = [Plain, NotifyOff, NotifyWorkerBusy, NotifyWorkerIdle];

    public bool IsAttached => Notify is not null;

    /// <summary>Every committing transaction should send one wake-up.</summary>
    public bool NotifiesEveryTransaction => Notify == true && WorkerIdle;
}
