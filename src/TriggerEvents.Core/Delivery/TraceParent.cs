namespace TriggerEvents.Core.Delivery;

/// <summary>
/// A W3C Trace Context <c>traceparent</c> (https://www.w3.org/TR/trace-context/#traceparent-header),
/// version 00: <c>00-&lt;32 hex trace id&gt;-&lt;16 hex parent id&gt;-&lt;2 hex flags&gt;</c>, lower case.
/// </summary>
internal readonly record struct TraceParent(string TraceId, string SpanId, string Flags)
{
    private const int Length = 55;

    /// <summary>
    /// Splits <paramref name="value"/>; false unless it is a valid version-00 traceparent (ids not all
    /// zeros, as the recommendation requires).
    /// </summary>
    public static bool TryParse(string? value, out TraceParent traceParent)
    {
        traceParent = default;
        if (value is null || value.Length != Length || !value.StartsWith("00-", StringComparison.Ordinal)
            || value[35] != '-' || value[52] != '-')
        {
            return false;
        }

        var traceId = value.AsSpan(3, 32);
        var spanId = value.AsSpan(36, 16);
        var flags = value.AsSpan(53, 2);
        if (!IsLowerHex(traceId) || !IsLowerHex(spanId) || !IsLowerHex(flags)
            || !traceId.ContainsAnyExcept('0') || !spanId.ContainsAnyExcept('0'))
        {
            return false;
        }

        traceParent = new TraceParent(traceId.ToString(), spanId.ToString(), flags.ToString());
        return true;
    }

    private static bool IsLowerHex(ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            if (!char.IsAsciiHexDigitLower(c) && !char.IsAsciiDigit(c))
            {
                return false;
            }
        }

        return true;
    }
}
