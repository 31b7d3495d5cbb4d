namespace TriggerEvents.Core.Delivery;

/// <summary>Where one of the event's JSON values goes in a body.</summary>
internal readonly record struct BodySlot(int Start, int Length);

/// <summary>Where the event's three JSON values go in a body; null for a value that is JSON <c>null</c>.</summary>
internal readonly record struct BodySlots(BodySlot? Old, BodySlot? New, BodySlot? Session);

/// <summary>
/// A webhook body without the event's three JSON values (old row, new row, session variables):
/// the rest, written once by <see cref="WebhookPayload.Layout"/> with <c>null</c> where each value
/// goes. Its <see cref="Length"/> says how large the body will be before any value is read, so the
/// body is allocated once at its exact size and each value read straight into its place.
/// </summary>
internal sealed class BodyLayout
{
    /// <summary>What stands where a value goes, and stays there for a value that is SQL NULL.</summary>
    internal static ReadOnlySpan<byte> Null => "null"u8;

    private readonly byte[] envelope;
    private readonly int oldAt;
    private readonly int newAt;
    private readonly int sessionAt;

    internal BodyLayout(byte[] envelope, int oldAt, int newAt, int sessionAt)
    {
        this.envelope = envelope;
        this.oldAt = oldAt;
        this.newAt = newAt;
        this.sessionAt = sessionAt;
    }

    /// <summary>The body's length in bytes with values of these lengths (null: the value is JSON <c>null</c>).</summary>
    public long Length(long? oldBytes, long? newBytes, long? sessionBytes) =>
        envelope.Length + Extra(oldBytes) + Extra(newBytes) + Extra(sessionBytes);

    /// <summary>
    /// Writes everything but the values into <paramref name="body"/>, which must be exactly
    /// <see cref="Length"/> bytes for the same lengths, and returns where the values go.
    /// </summary>
    public BodySlots Place(Span<byte> body, int? oldBytes, int? newBytes, int? sessionBytes)
    {
        if (body.Length != Length(oldBytes, newBytes, sessionBytes))
        {
            throw new ArgumentException("The body is not the length of this layout with these values.", nameof(body));
        }

        var from = 0;
        var to = 0;
        var old = Copy(body, oldAt, oldBytes, ref from, ref to);
        var @new = Copy(body, newAt, newBytes, ref from, ref to);
        var session = Copy(body, sessionAt, sessionBytes, ref from, ref to);
        envelope.AsSpan(from).CopyTo(body[to..]);
        return new BodySlots(old, @new, session);
    }

    private static long Extra(long? bytes) => bytes is { } length ? length - Null.Length : 0;

    /// <summary>Copies the envelope up to the hole at <paramref name="holeAt"/>, then makes room for the value.</summary>
    private BodySlot? Copy(Span<byte> body, int holeAt, int? valueBytes, ref int from, ref int to)
    {
        envelope.AsSpan(from, holeAt - from).CopyTo(body[to..]);
        to += holeAt - from;
        from = holeAt;
        if (valueBytes is not { } length)
        {
            // SQL NULL: the envelope's own null stays.
            return null;
        }

        from += Null.Length;
        var slot = new BodySlot(to, length);
        to += length;
        return slot;
    }
}
