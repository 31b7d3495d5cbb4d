using System.Globalization;

namespace TriggerEvents.Core.Delivery;

/// <summary>
/// What one delivery attempt came to: the HTTP status if a response arrived, and the error if
/// something went wrong. <see cref="RetryPolicy.Decide"/> turns it into what happens next.
/// </summary>
/// <param name="StatusCode">The response status, or null when no response arrived.</param>
/// <param name="Error">What went wrong, for the dead-letter row and the logs; never a header or secret value.</param>
/// <param name="IsTimeout">The request did not finish within <c>webhook.timeout</c>.</param>
/// <param name="IsConnectionError">No connection could be made or it broke before a response.</param>
internal sealed record DeliveryOutcome(int? StatusCode, string? Error, bool IsTimeout, bool IsConnectionError)
{
    /// <summary>Any 2xx: the receiver has the event.</summary>
    public bool IsSuccess => StatusCode is >= 200 and <= 299;

    /// <summary>A response with <paramref name="statusCode"/>.</summary>
    public static DeliveryOutcome Response(int statusCode) => new(statusCode, null, IsTimeout: false, IsConnectionError: false);

    /// <summary>No response within the timeout.</summary>
    public static DeliveryOutcome Timeout(TimeSpan timeout) =>
        new(null, $"no response within {Configuration.Duration.Format(timeout)}", IsTimeout: true, IsConnectionError: false);

    /// <summary>The connection failed: refused, reset, DNS, TLS.</summary>
    public static DeliveryOutcome ConnectionError(string error) => new(null, error, IsTimeout: false, IsConnectionError: true);

    /// <summary>Anything else that failed the attempt before a status was known.</summary>
    public static DeliveryOutcome Failed(string error) => new(null, error, IsTimeout: false, IsConnectionError: false);

    /// <summary>One line for a dead-letter reason or a log: <c>HTTP 503</c>, <c>timeout: ...</c>, <c>connection error: ...</c>.</summary>
    public string Describe()
    {
        var status = StatusCode is { } code ? string.Create(CultureInfo.InvariantCulture, $"HTTP {code}") : null;
        var kind = IsTimeout ? "timeout" : IsConnectionError ? "connection error" : status is null ? "error" : null;
        return (status, kind, Error) switch
        {
            (not null, _, null) => status,
            (not null, _, _) => $"{status}: {Error}",
            (null, _, null) => kind!,
            _ => $"{kind}: {Error}",
        };
    }
}
