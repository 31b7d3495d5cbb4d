using System.Text;

namespace TriggerEvents.Core.Delivery;

/// <summary>
/// One JSON value as UTF-8 text, as the database rendered it: copied into a body as it is, never
/// parsed and written back (see <see cref="WebhookPayload"/>). The worker reads rows this way,
/// not as .NET strings, which would hold them twice over in UTF-16.
/// </summary>
internal readonly struct Utf8Json : IEquatable<Utf8Json>
{
    /// <summary>Wraps <paramref name="utf8"/>; the memory must stay as it is while this value is used.</summary>
    public Utf8Json(ReadOnlyMemory<byte> utf8) => Utf8 = utf8;

    /// <summary>The JSON text in UTF-8.</summary>
    public ReadOnlyMemory<byte> Utf8 { get; }

    /// <summary>Its length in bytes.</summary>
    public int Length => Utf8.Length;

    /// <summary>A copy of <paramref name="json"/> in UTF-8 (tests and small payloads).</summary>
    public static implicit operator Utf8Json(string json) => new(Encoding.UTF8.GetBytes(json));

    /// <inheritdoc cref="op_Implicit(string)"/>
    public static Utf8Json FromString(string json) => json;

    /// <summary>The JSON text, decoded.</summary>
    public override string ToString() => Encoding.UTF8.GetString(Utf8.Span);

    public bool Equals(Utf8Json other) => Utf8.Span.SequenceEqual(other.Utf8.Span);

    public override bool Equals(object? obj) => obj is Utf8Json other && Equals(other);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.AddBytes(Utf8.Span);
        return hash.ToHashCode();
    }

    public static bool operator ==(Utf8Json left, Utf8Json right) => left.Equals(right);

    public static bool operator !=(Utf8Json left, Utf8Json right) => !left.Equals(right);
}
