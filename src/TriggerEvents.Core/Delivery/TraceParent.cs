namespace TriggerEvents.Core.Delivery;

/// <summary>
/// A valid W3C Trace Context <c>traceparent</c> (https://www.w3.org/TR/trace-context/#traceparent-header)
/// as the worker forwards it: <c>00-&lt;32 hex trace id&gt;-&lt;16 hex parent id&gt;-&lt;2 hex flags&gt;</c>,
/// lower case, 55 characters.
/// </summary>
/// <remarks>
/// Writers set the value (<c>SET LOCAL trigger_events.traceparent</c>) and nothing checks it at
/// capture, so the worker reads it strictly and drops anything else: a value that is
/// not a traceparent is never forwarded to a receiver, and never fails a request (a non-ASCII or
/// multi-line header value made every attempt of its event fail until it was dead).
/// </remarks>
internal readonly struct TraceParent
{
    private const int Length = 55;

    private TraceParent(string value) => Value = value;

    /// <summary>The header value to send: the writer's own when it was version 00.</summary>
    public string Value { get; }

    /// <summary>The 32 hex digits of the trace id.</summary>
    public ReadOnlySpan<char> TraceId => Value.AsSpan(3, 32);

    /// <summary>The 16 hex digits of the parent (span) id.</summary>
    public ReadOnlySpan<char> SpanId => Value.AsSpan(36, 16);

    /// <summary>The 2 hex digits of the trace flags.</summary>
    public ReadOnlySpan<char> Flags => Value.AsSpan(53, 2);

    /// <summary>
    /// Reads <paramref name="value"/> by the rules of the Recommendation; false for anything that is
    /// not a valid traceparent.
    /// </summary>
    /// <remarks>
    /// Version 00 must be exactly 55 characters. A later version (any two lower-case hex digits but
    /// <c>ff</c>, which is invalid) is read as the Recommendation's versioning section says: at least
    /// 55 characters, the version-00 fields in their places, and after the flags either the end or a
    /// <c>-</c>. It is then forwarded as version 00 with those fields, since the worker cannot vouch
    /// for what follows; flags beyond the ones version 00 defines (sampled, random) are cleared.
    /// Every field is lower-case hex; an all-zero trace id or parent id is invalid. No allocation
    /// for a version-00 value.
    /// </remarks>
    public static bool TryParse(string? value, out TraceParent traceParent)
    {
        traceParent = default;
        if (value is null || value.Length < Length || !IsLowerHex(value.AsSpan(0, 2)) || value.StartsWith("ff", StringComparison.Ordinal))
        {
            return false;
        }

        var version00 = value[0] == '0' && value[1] == '0';
        if (version00 ? value.Length != Length : value.Length > Length && value[Length] != '-')
        {
            return false;
        }

        if (value[2] != '-' || value[35] != '-' || value[52] != '-')
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

        if (version00)
        {
            traceParent = new TraceParent(value);
            return true;
        }

        // 0x01 sampled and 0x02 random (Trace Context Level 2) are the flags version 00 knows.
        var known = Convert.FromHexString(flags)[0] & 0x03;
        traceParent = new TraceParent(string.Create(
            System.Globalization.CultureInfo.InvariantCulture, $"00-{traceId}-{spanId}-{known:x2}"));
        return true;
    }

    /// <inheritdoc/>
    public override string ToString() => Value ?? "";

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
