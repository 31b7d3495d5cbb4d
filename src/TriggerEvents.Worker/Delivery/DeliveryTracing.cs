using System.Diagnostics;
using System.Reflection;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// One OpenTelemetry span per delivery attempt (SPEC "Worker", Tracing), on the
/// <see cref="SourceName"/> activity source: a child of the writer's <c>traceparent</c> when the
/// event has a valid one, a root span otherwise, and the request's <c>traceparent</c> header then
/// names this span, so the receiver's trace continues the writer's.
/// </summary>
/// <remarks>
/// The run command subscribes to the source only when an OTLP endpoint is configured. Otherwise
/// nothing listens, <see cref="StartAttempt"/> returns null before parsing or allocating anything,
/// and the writer's traceparent is forwarded unchanged, as it always was.
/// </remarks>
internal static class DeliveryTracing
{
    /// <summary>The name of the <see cref="ActivitySource"/> the attempts' spans come from.</summary>
    public const string SourceName = "TriggerEvents.Delivery";

    // Attribute names: OpenTelemetry's semantic conventions where one fits (HTTP client spans),
    // the product's own namespace for the rest.
    public const string SubscriptionTag = "triggerevents.subscription";
    public const string EventIdTag = "triggerevents.event_id";
    public const string AttemptTag = "triggerevents.attempt";
    public const string WebhookIdTag = "triggerevents.webhook_id";
    public const string OutcomeTag = "triggerevents.outcome";
    public const string StatusCodeTag = "http.response.status_code";
    public const string ErrorTypeTag = "error.type";

    private static readonly ActivitySource Source = new(
        SourceName,
        typeof(DeliveryTracing).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]);

    /// <summary>
    /// Starts the span of one attempt of <paramref name="delivery"/> to <paramref name="subscription"/>;
    /// null when tracing is off. Dispose it to end it.
    /// </summary>
    public static Activity? StartAttempt(string subscription, ClaimedDelivery delivery, Uri target)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        // Only a valid traceparent (TraceParent) is a parent: a malformed one starts a new trace,
        // as it is dropped rather than forwarded when tracing is off.
        var parent = default(ActivityContext);
        if (TraceParent.TryParse(delivery.Event.TraceParent, out var traceParent))
        {
            ActivityContext.TryParse(traceParent.Value, traceState: null, isRemote: true, out parent);
        }

        var current = Activity.Current;
        var span = Source.StartActivity("deliver " + subscription, ActivityKind.Client, parent);
        // Not left as Activity.Current: HttpClient would then make an Activity of its own for
        // every request only to propagate it, and the request's header is set from this span.
        Activity.Current = current;
        if (span is { IsAllDataRequested: true })
        {
            span.SetTag(SubscriptionTag, subscription);
            span.SetTag(EventIdTag, delivery.Event.Id);
            span.SetTag(AttemptTag, delivery.Attempt);
            span.SetTag(WebhookIdTag, WebhookId.For(delivery.Event.Id, subscription));
            span.SetTag("http.request.method", "POST");
            // The host and port only: a URL's path or query may hold a token.
            span.SetTag("server.address", target.Host);
            span.SetTag("server.port", target.Port);
        }

        return span;
    }

    /// <summary>
    /// The <c>traceparent</c> header for a request: the attempt's span when tracing is on, otherwise
    /// the writer's own when it is valid; null for none.
    /// </summary>
    public static string? TraceParentHeader(Activity? span, string? writers)
    {
        if (span is not null)
        {
            // W3C is the default id format since .NET 5; a hierarchical id would not be a traceparent.
            return span.IdFormat == ActivityIdFormat.W3C ? span.Id : null;
        }

        return TraceParent.TryParse(writers, out var traceParent) ? traceParent.Value : null;
    }

    /// <summary>Records what the attempt came to on its span: its outcome, the HTTP status, and an error status unless it was delivered.</summary>
    public static void Finish(Activity? span, DeliveryOutcome outcome, DeliveryResultKind kind)
    {
        if (span is not { IsAllDataRequested: true })
        {
            return;
        }

        span.SetTag(OutcomeTag, kind switch
        {
            DeliveryResultKind.Delivered => "delivered",
            DeliveryResultKind.Retry => "retry",
            DeliveryResultKind.Dead => "dead",
            _ => kind.ToString().ToLowerInvariant(),
        });
        if (outcome.Status is { } status)
        {
            span.SetTag(StatusCodeTag, status);
        }

        if (!outcome.IsSuccess)
        {
            span.SetTag(ErrorTypeTag, outcome.ErrorType ?? "error");
            // Describe() holds no header or secret value (DeliveryOutcome.Description).
            span.SetStatus(ActivityStatusCode.Error, outcome.Describe());
        }
    }
}
