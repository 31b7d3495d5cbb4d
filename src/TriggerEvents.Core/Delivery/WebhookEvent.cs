namespace TriggerEvents.Core.Delivery;

/// <summary>
/// A captured event as the webhook body shows it: what <see cref="WebhookPayload.Write"/> needs from
/// the event log row.
/// </summary>
/// <param name="Id">The event's id in the log.</param>
/// <param name="CapturedAt">When the capturing transaction wrote it (the database clock).</param>
/// <param name="TriggerName">The event trigger that captured it.</param>
/// <param name="TableSchema">The schema of the table, or whatever <c>invoke</c> recorded for a MANUAL event.</param>
/// <param name="TableName">The table's name.</param>
/// <param name="Operation">INSERT, UPDATE, DELETE, MANUAL or READ (a backfilled row).</param>
/// <param name="OldRow">The row before the change as JSON text, or null (for INSERT, MANUAL and READ,
/// and for an event too large to come with its claim: the worker reads it apart).</param>
/// <param name="NewRow">The row after the change (the payload for MANUAL) as JSON text, or null (for DELETE).</param>
/// <param name="SessionVariables">The <c>trigger_events.session</c> JSON object of the capturing transaction, or null.</param>
/// <param name="TraceParent">The <c>trigger_events.traceparent</c> of the capturing transaction as the writer
/// set it, or null; only what <see cref="Delivery.TraceParent.TryParse"/> accepts is sent on.</param>
/// <param name="ConditionError">The error the trigger's condition raised for this row (the event was
/// captured as if it were true), or null.</param>
internal sealed record WebhookEvent(
    long Id,
    DateTimeOffset CapturedAt,
    string TriggerName,
    string TableSchema,
    string TableName,
    string Operation,
    Utf8Json? OldRow,
    Utf8Json? NewRow,
    Utf8Json? SessionVariables,
    string? TraceParent,
    string? ConditionError = null);
