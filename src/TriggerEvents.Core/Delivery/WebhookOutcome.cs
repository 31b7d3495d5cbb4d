using System.Globalization;

namespace TriggerEvents.Core.Delivery;

/// <summary>
/// A webhook attempt's HTTP facts as a <see cref="DeliveryOutcome"/> (SPEC "Webhook request"):
/// any 2xx is accepted; 410 Gone means the endpoint is gone for good; 5xx, a timeout and a
/// connection error are the target failing (the breaker counts them); any other status (4xx, and
/// 3xx since redirects are not followed) is declined and retried. A 429 or 503 with a positive
/// <c>Retry-After</c> holds back the whole target, not only the one delivery. A 413 is the body
/// over the target's limit: a batch is split (<see cref="DeliveryOutcome.IsTooLarge"/>).
/// </summary>
internal static class WebhookOutcome
{
    /// <summary>A response with <paramref name="statusCode"/>, and its <c>Retry-After</c> as a delay (<see cref="Delivery.RetryAfter.TryParse"/>), if any.</summary>
    public static DeliveryOutcome Response(int statusCode, TimeSpan? retryAfter = null)
    {
        var verdict = statusCode switch
        {
            >= 200 and <= 299 => TargetVerdict.Accepted,
            410 => TargetVerdict.Gone,
            >= 500 => TargetVerdict.Failed,
            _ => TargetVerdict.Declined,
        };
        var code = statusCode.ToString(CultureInfo.InvariantCulture);
        return new DeliveryOutcome(verdict, "HTTP " + code)
        {
            Status = statusCode,
            ErrorType = verdict == TargetVerdict.Accepted ? null : code,
            RetryAfter = retryAfter,
            HoldsTarget = statusCode is 429 or 503 && retryAfter > TimeSpan.Zero,
            // 413 Content Too Large: what a proxy or server answers a body over its limit.
            IsTooLarge = statusCode == 413,
        };
    }

    /// <summary>No response within the timeout.</summary>
    public static DeliveryOutcome Timeout(TimeSpan timeout) =>
        new(TargetVerdict.Failed, $"timeout: no response within {Configuration.Duration.Format(timeout)}") { ErrorType = "timeout" };

    /// <summary>The connection failed: refused, reset, DNS, TLS. <paramref name="error"/> names the host and the failure, never a header value.</summary>
    public static DeliveryOutcome ConnectionError(string error) =>
        new(TargetVerdict.Failed, "connection error: " + error) { ErrorType = "connection_error" };

    /// <summary>The worker refused to connect to the destination; <paramref name="error"/> says why.</summary>
    public static DeliveryOutcome Refused(string error) =>
        new(TargetVerdict.Refused, "refused: " + error) { ErrorType = "refused" };
}
