using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace TriggerEvents.Core.Delivery;

/// <summary>
/// Signs webhook requests the Standard Webhooks way (https://www.standardwebhooks.com): the
/// <c>webhook-signature</c> header is <c>v1,&lt;base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"&gt;</c>
/// for each configured secret, separated by spaces, so a receiver can rotate its secret without
/// refusing requests in between.
/// </summary>
/// <remarks>
/// An instance decodes its secrets once and is safe to share between threads; the static
/// <see cref="Sign(string, long, ReadOnlySpan{byte}, IReadOnlyList{string})"/> decodes them on each call.
/// </remarks>
internal sealed class WebhookSigner
{
    /// <summary>The signature scheme this signer writes and verifies.</summary>
    public const string SchemeVersion = "v1";

    /// <summary>How far a timestamp may be from now in <see cref="Verify"/> unless told otherwise: the Standard Webhooks recommendation.</summary>
    public static readonly TimeSpan DefaultTolerance = TimeSpan.FromMinutes(5);

    private const int SignatureLength = 32;
    private const int StackPrefixLimit = 256;

    private readonly byte[][] _keys;

    /// <summary>Decodes <paramref name="secrets"/> (<c>whsec_...</c>, at least one); throws <see cref="ArgumentException"/> for one that is not valid.</summary>
    public WebhookSigner(IReadOnlyList<string> secrets)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        if (secrets.Count == 0)
        {
            throw new ArgumentException("At least one signing secret is needed.", nameof(secrets));
        }

        _keys = secrets.Select(SigningSecret.Decode).ToArray();
    }

    /// <summary>
    /// The <c>webhook-signature</c> value for one attempt: one <c>v1,...</c> per secret, space-separated.
    /// </summary>
    /// <param name="msgId">The <c>webhook-id</c>; it may not contain '.', which separates the signed parts.</param>
    /// <param name="timestampSeconds">The <c>webhook-timestamp</c>: Unix seconds of this attempt.</param>
    /// <param name="body">The exact bytes of the request body.</param>
    public string Sign(string msgId, long timestampSeconds, ReadOnlySpan<byte> body)
    {
        ArgumentException.ThrowIfNullOrEmpty(msgId);
        if (msgId.Contains('.', StringComparison.Ordinal))
        {
            throw new ArgumentException("A webhook id may not contain '.'.", nameof(msgId));
        }

        Span<byte> signature = stackalloc byte[SignatureLength];
        var header = new StringBuilder(_keys.Length * 48);
        foreach (var key in _keys)
        {
            ComputeSignature(key, msgId, timestampSeconds, body, signature);
            if (header.Length > 0)
            {
                header.Append(' ');
            }

            header.Append(SchemeVersion).Append(',').Append(Convert.ToBase64String(signature));
        }

        return header.ToString();
    }

    /// <summary>As <see cref="Sign(string, long, ReadOnlySpan{byte})"/>, for a body in several pieces (a large body in chunks).</summary>
    public string Sign(string msgId, long timestampSeconds, ReadOnlySequence<byte> body)
    {
        if (body.IsSingleSegment)
        {
            return Sign(msgId, timestampSeconds, body.FirstSpan);
        }

        ArgumentException.ThrowIfNullOrEmpty(msgId);
        if (msgId.Contains('.', StringComparison.Ordinal))
        {
            throw new ArgumentException("A webhook id may not contain '.'.", nameof(msgId));
        }

        Span<byte> signature = stackalloc byte[SignatureLength];
        var header = new StringBuilder(_keys.Length * 48);
        foreach (var key in _keys)
        {
            using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
            AppendPrefix(hmac, msgId, timestampSeconds);
            foreach (var piece in body)
            {
                hmac.AppendData(piece.Span);
            }

            hmac.GetHashAndReset(signature);
            if (header.Length > 0)
            {
                header.Append(' ');
            }

            header.Append(SchemeVersion).Append(',').Append(Convert.ToBase64String(signature));
        }

        return header.ToString();
    }

    /// <summary>Signs with <paramref name="secrets"/>, decoding them for this call; see <see cref="Sign(string, long, ReadOnlySpan{byte})"/>.</summary>
    public static string Sign(string msgId, long timestampSeconds, ReadOnlySpan<byte> body, IReadOnlyList<string> secrets) =>
        new WebhookSigner(secrets).Sign(msgId, timestampSeconds, body);

    /// <summary>
    /// Checks a received request as a Standard Webhooks receiver does: the timestamp within
    /// <paramref name="tolerance"/> (default <see cref="DefaultTolerance"/>) of <paramref name="now"/>
    /// either way, and any <c>v1</c> signature in <paramref name="signatureHeader"/> matching any of
    /// <paramref name="secrets"/>. Comparisons take constant time. Signatures of other schemes are
    /// skipped.
    /// </summary>
    public static WebhookVerification Verify(
        string? msgId,
        string? timestampHeader,
        ReadOnlySpan<byte> body,
        string? signatureHeader,
        IReadOnlyList<string> secrets,
        DateTimeOffset now,
        TimeSpan? tolerance = null)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        if (string.IsNullOrEmpty(msgId) || string.IsNullOrEmpty(timestampHeader) || string.IsNullOrEmpty(signatureHeader))
        {
            return WebhookVerification.MissingHeader;
        }

        if (!long.TryParse(timestampHeader, NumberStyles.None, CultureInfo.InvariantCulture, out var timestamp)
            || timestamp > DateTimeOffset.MaxValue.ToUnixTimeSeconds())
        {
            return WebhookVerification.InvalidTimestamp;
        }

        var allowed = tolerance ?? DefaultTolerance;
        if ((DateTimeOffset.FromUnixTimeSeconds(timestamp) - now).Duration() > allowed)
        {
            return WebhookVerification.TimestampOutsideTolerance;
        }

        var keys = secrets.Select(secret => SigningSecret.TryDecode(secret, out var key) ? key : null).OfType<byte[]>().ToArray();
        Span<byte> expected = stackalloc byte[SignatureLength * Math.Max(keys.Length, 1)];
        for (var i = 0; i < keys.Length; i++)
        {
            ComputeSignature(keys[i], msgId, timestamp, body, expected.Slice(i * SignatureLength, SignatureLength));
        }

        Span<byte> received = stackalloc byte[SignatureLength + 3];
        foreach (var part in signatureHeader.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var comma = part.IndexOf(',', StringComparison.Ordinal);
            if (comma < 0 || part.AsSpan(0, comma) is not SchemeVersion)
            {
                continue;
            }

            if (!Convert.TryFromBase64Chars(part.AsSpan(comma + 1), received, out var written) || written != SignatureLength)
            {
                continue;
            }

            for (var i = 0; i < keys.Length; i++)
            {
                if (CryptographicOperations.FixedTimeEquals(received[..SignatureLength], expected.Slice(i * SignatureLength, SignatureLength)))
                {
                    return WebhookVerification.Valid;
                }
            }
        }

        return WebhookVerification.NoMatchingSignature;
    }

    private static void ComputeSignature(byte[] key, string msgId, long timestampSeconds, ReadOnlySpan<byte> body, Span<byte> destination)
    {
        // The signed content is "{id}.{timestamp}.{body}"; the prefix is encoded apart and the body
        // fed as it is, so a large body is never copied.
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
        AppendPrefix(hmac, msgId, timestampSeconds);
        hmac.AppendData(body);
        hmac.GetHashAndReset(destination);
    }

    /// <summary>Feeds "{id}.{timestamp}." to <paramref name="hmac"/>.</summary>
    private static void AppendPrefix(IncrementalHash hmac, string msgId, long timestampSeconds)
    {
        var maxPrefix = Encoding.UTF8.GetMaxByteCount(msgId.Length) + 22;
        byte[]? rented = null;
        var prefix = maxPrefix <= StackPrefixLimit
            ? stackalloc byte[StackPrefixLimit]
            : (rented = ArrayPool<byte>.Shared.Rent(maxPrefix));
        try
        {
            var length = Encoding.UTF8.GetBytes(msgId, prefix);
            prefix[length++] = (byte)'.';
            timestampSeconds.TryFormat(prefix[length..], out var digits, provider: CultureInfo.InvariantCulture);
            length += digits;
            prefix[length++] = (byte)'.';
            hmac.AppendData(prefix[..length]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }
}
