namespace TriggerEvents.Core.Delivery;

/// <summary>
/// A Standard Webhooks signing secret, <c>whsec_</c> followed by the base64 of the HMAC key.
/// </summary>
internal static class SigningSecret
{
    /// <summary>What every secret starts with.</summary>
    public const string Prefix = "whsec_";

    /// <summary>The <c>signing_secret</c> value that sends requests unsigned, on purpose.</summary>
    public const string Unsigned = "none";

    /// <summary>
    /// The HMAC key in <paramref name="secret"/>: false when the prefix is missing or the rest is not
    /// standard, padded base64 of at least one byte.
    /// </summary>
    public static bool TryDecode(string secret, out byte[] key)
    {
        ArgumentNullException.ThrowIfNull(secret);
        key = [];
        if (!secret.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var encoded = secret.AsSpan(Prefix.Length);

        // Convert skips whitespace inside base64; a secret with a space in it is two secrets, not one.
        if (encoded.IsEmpty || encoded.ContainsAny(" \t\r\n"))
        {
            return false;
        }

        var buffer = new byte[encoded.Length * 3 / 4];
        if (!Convert.TryFromBase64Chars(encoded, buffer, out var written) || written == 0)
        {
            return false;
        }

        key = buffer.AsSpan(0, written).ToArray();
        return true;
    }

    /// <summary>The key in <paramref name="secret"/>; throws <see cref="ArgumentException"/> (without the secret in it) when it is not one.</summary>
    public static byte[] Decode(string secret) =>
        TryDecode(secret, out var key)
            ? key
            : throw new ArgumentException($"A signing secret must be '{Prefix}' followed by base64.", nameof(secret));

    /// <summary>The secrets of a <c>signing_secret</c> value: one or more, separated by whitespace.</summary>
    public static IReadOnlyList<string> Split(string value) =>
        value.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
}
