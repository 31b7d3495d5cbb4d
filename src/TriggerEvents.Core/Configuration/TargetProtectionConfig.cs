using System.Globalization;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// <c>rate_limit</c> of a subscription: requests per second to its webhook, across all worker
/// replicas together (a batch is one request). Bursts may use up to one second's worth at once
/// (at least one request).
/// </summary>
/// <param name="PerSecond">Requests per second, more than 0 (<c>N/m</c> is N / 60).</param>
internal sealed record RateLimit(double PerSecond)
{
    /// <summary>How <see cref="TryParse"/> wants it written, for error messages.</summary>
    public const string Examples = "200/s or 30/m";

    /// <summary>The largest rate accepted: far beyond what one webhook can take, small enough to compute with.</summary>
    public const double MaxPerSecond = 1_000_000;

    /// <summary>Reads <c>N/s</c> or <c>N/m</c> (N a number, decimals allowed); false when it is neither.</summary>
    public static bool TryParse(string? text, out double perSecond)
    {
        perSecond = 0;
        var slash = text?.IndexOf('/', StringComparison.Ordinal) ?? -1;
        if (text is null || slash <= 0)
        {
            return false;
        }

        var unit = text[(slash + 1)..];
        var divisor = unit switch
        {
            "s" => 1.0,
            "m" => 60.0,
            _ => 0,
        };
        if (divisor == 0 || !double.TryParse(text[..slash], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var count))
        {
            return false;
        }

        perSecond = count / divisor;
        return true;
    }

    /// <summary>As the file would write it: <c>20/s</c>, <c>0.5/s</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{PerSecond:0.###}/s");
}

/// <summary>
/// <c>circuit_breaker</c> of a subscription (off unless given): stops sending to a target that
/// keeps failing (timeouts, connection errors, 5xx; not 410, 429 or other 4xx). While open,
/// deliveries wait without spending attempts; after <see cref="OpenFor"/> one probe request
/// decides; after <see cref="PauseAfter"/> opens in a row without a success the subscription is
/// paused. Its state is shared by every replica (migration 000007).
/// </summary>
internal sealed record CircuitBreakerConfig
{
    /// <summary>Default for <see cref="FailureRate"/>: 50%.</summary>
    public const double DefaultFailureRate = 0.5;

    /// <summary>Default for <see cref="MinRequests"/>.</summary>
    public const int DefaultMinRequests = 20;

    /// <summary>Default for <see cref="Window"/>.</summary>
    public static readonly TimeSpan DefaultWindow = TimeSpan.FromMinutes(1);

    /// <summary>Default for <see cref="OpenFor"/>.</summary>
    public static readonly TimeSpan DefaultOpenFor = TimeSpan.FromSeconds(30);

    /// <summary>Default for <see cref="PauseAfter"/>.</summary>
    public const int DefaultPauseAfter = 10;

    /// <summary><c>failure_rate</c>: the share of failed attempts (written <c>50%</c>) that opens the circuit, in (0, 1].</summary>
    public double FailureRate { get; init; } = DefaultFailureRate;

    /// <summary><c>min_requests</c>: attempts within <see cref="Window"/> before the rate counts (at least 1).</summary>
    public int MinRequests { get; init; } = DefaultMinRequests;

    /// <summary><c>window</c>: how long attempts are counted together; the count starts again after it.</summary>
    public TimeSpan Window { get; init; } = DefaultWindow;

    /// <summary><c>open_for</c>: how long an open circuit sends nothing before one probe request.</summary>
    public TimeSpan OpenFor { get; init; } = DefaultOpenFor;

    /// <summary><c>pause_after</c>: opens in a row without a success after which the subscription is paused (at least 1).</summary>
    public int PauseAfter { get; init; } = DefaultPauseAfter;

    /// <summary>Reads <c>50%</c> (a percentage from more than 0 to 100) as a fraction; false otherwise.</summary>
    public static bool TryParseRate(string? text, out double fraction)
    {
        fraction = 0;
        if (text is not { Length: > 1 } || text[^1] != '%' ||
            !double.TryParse(text[..^1], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var percent))
        {
            return false;
        }

        fraction = percent / 100;
        return true;
    }
}
