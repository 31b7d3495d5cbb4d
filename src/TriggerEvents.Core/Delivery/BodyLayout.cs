namespace TriggerEvents.Core.Delivery;

/// <summary>Where one of the event's JSON values goes in a body.</summary>
internal readonly record struct BodySlot(int Start, int Length);

/// <summary>Where the event's three JSON values go in a body; null for a value that is JSON <c>null</c>.</summary>
internal readonly record struct BodySlots(BodySlot? Old, BodySlot? New, BodySlot? Session);

/// <summary>Writes <paramref name="bytes"/> at <paramref name="offset"/> of a body that is not one span (a body in chunks).</summary>
internal delegate void BodyWriter(int offset, ReadOnlySpan<byte> bytes);

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

        var slots = Slots(oldBytes, newBytes, sessionBytes);
        Span<(int From, int To, int Length)> pieces = stackalloc (int, int, int)[4];
        foreach (var (from, to, length) in pieces[..Pieces(slots, pieces)])
        {
            envelope.AsSpan(from, length).CopyTo(body[to..]);
        }

        return slots;
    }

    /// <summary>As <see cref="Place(Span{byte}, int?, int?, int?)"/>, for a body written through <paramref name="write"/>.</summary>
    public BodySlots Place(BodyWriter write, int? oldBytes, int? newBytes, int? sessionBytes)
    {
        ArgumentNullException.ThrowIfNull(write);
        var slots = Slots(oldBytes, newBytes, sessionBytes);
        Span<(int From, int To, int Length)> pieces = stackalloc (int, int, int)[4];
        foreach (var (from, to, length) in pieces[..Pieces(slots, pieces)])
        {
            write(to, envelope.AsSpan(from, length));
        }

        return slots;
    }

    /// <summary>Where the values go in the body.</summary>
    private BodySlots Slots(int? oldBytes, int? newBytes, int? sessionBytes)
    {
        var shift = 0;
        var old = Slot(oldAt, oldBytes, ref shift);
        var @new = Slot(newAt, newBytes, ref shift);
        var session = Slot(sessionAt, sessionBytes, ref shift);
        return new BodySlots(old, @new, session);
    }

    /// <summary>A value at the hole at <paramref name="holeAt"/> of the envelope, <paramref name="shift"/> bytes on in the body.</summary>
    private static BodySlot? Slot(int holeAt, int? valueBytes, ref int shift)
    {
        if (valueBytes is not { } length)
        {
            // SQL NULL: the envelope's own null stays.
            return null;
        }

        var slot = new BodySlot(holeAt + shift, length);
        shift += length - Null.Length;
        return slot;
    }

    /// <summary>
    /// The envelope's pieces around the values, (offset in the envelope, offset in the body,
    /// length), written to <paramref name="pieces"/> (room for four); returns how many.
    /// </summary>
    private int Pieces(BodySlots slots, Span<(int From, int To, int Length)> pieces)
    {
        var count = 0;
        var from = 0;
        var to = 0;
        Add(oldAt, slots.Old, pieces);
        Add(newAt, slots.New, pieces);
        Add(sessionAt, slots.Session, pieces);
        pieces[count++] = (from, to, envelope.Length - from);
        return count;

        void Add(int holeAt, BodySlot? slot, Span<(int From, int To, int Length)> into)
        {
            if (slot is { } value)
            {
                into[count++] = (from, to, holeAt - from);
                to += holeAt - from + value.Length;
                from = holeAt + Null.Length;
            }
        }
    }

    private static long Extra(long? bytes) => bytes is { } length ? length - Null.Length : 0;
}
