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
/// <param name="IsRefused">The worker itself refused to send it (<c>worker.deny_private_networks</c>):
/// nothing reached the target, and trying again would be refused the same way.</param>
internal sealed record DeliveryOutcome(int? StatusCode, string? Error, bool IsTimeout, bool IsConnectionError, bool IsRefused = false)
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

    /// <summary>The worker refused to connect to the destination; <paramref name="error"/> says why.</summary>
    public static DeliveryOutcome Refused(string error) => new(null, error, IsTimeout: false, IsConnectionError: false, IsRefused: true);

    /// <summary>Anything else that failed the attempt before a status was known.</summary>
    public static DeliveryOutcome Failed(string error) => new(null, error, IsTimeout: false, IsConnectionError: false);

    /// <summary>One line for a dead-letter reason or a log: <c>HTTP 503</c>, <c>timeout: ...</c>, <c>connection error: ...</c>, <c>refused: ...</c>.</summary>
    public string Describe()
    {
        var status = StatusCode is { } code ? string.Create(CultureInfo.InvariantCulture, $"HTTP {code}") : null;
        var kind = IsTimeout ? "timeout" : IsConnectionError ? "connection error" : IsRefused ? "refused" : status is null ? "error" : null;
        return (status, kind, Error) switch
        {
            (not null, _, null) => status,
            (not null, _, _) => $"{status}: {Error}",
            (null, _, null) => kind!,
            _ => $"{kind}: {Error}",
        };
    }
}
