using System.Globalization;

namespace TriggerEvents.Core.Delivery;

/// <summary>Reads a <c>Retry-After</c> response header (RFC 9110 §10.2.3) as a delay.</summary>
internal static class RetryAfter
{
    // IMF-fixdate first (what servers send), then the two obsolete forms RFC 9110 still requires
    // recipients to accept: RFC 850 and C asctime.
    private static readonly string[] HttpDateFormats =
    [
        "ddd, dd MMM yyyy HH:mm:ss 'GMT'",
        "dddd, dd-MMM-yy HH:mm:ss 'GMT'",
        "ddd MMM d HH:mm:ss yyyy",
        "ddd MMM dd HH:mm:ss yyyy",
    ];

    /// <summary>
    /// The delay <paramref name="headerValue"/> asks for: delta-seconds (<c>120</c>) or an HTTP-date,
    /// measured from <paramref name="now"/>. A date in the past is a delay of zero. False for anything
    /// else, including negative or fractional seconds.
    /// </summary>
    public static bool TryParse(string? headerValue, DateTimeOffset now, out TimeSpan delay)
    {
        delay = TimeSpan.Zero;
        if (string.IsNullOrWhiteSpace(headerValue))
        {
            return false;
        }

        var value = headerValue.Trim();
        if (char.IsAsciiDigit(value[0]))
        {
            if (!value.All(char.IsAsciiDigit))
            {
                return false;
            }

            // A number too large for a long is still a valid "a very long time"; the policy caps it.
            delay = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
                    && seconds <= (long)TimeSpan.MaxValue.TotalSeconds
                ? TimeSpan.FromSeconds(seconds)
                : TimeSpan.MaxValue;
            return true;
        }

        var asctime = value.Replace("  ", " ", StringComparison.Ordinal);
        if (!DateTimeOffset.TryParseExact(asctime, HttpDateFormats, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var date))
        {
            return false;
        }

        delay = date > now ? date - now : TimeSpan.Zero;
        return true;
    }
}
