using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace TriggerEvents.Core.Delivery;

/// <summary>
/// What is kept of a failed attempt's response body (SPEC "Roles and secrets"): its first
/// <see cref="MaxBytes"/> bytes as text, with whatever looks like a credential replaced by
/// <see cref="Redacted"/>. Successes keep nothing.
/// </summary>
/// <remarks>
/// Receivers echo requests back in their error pages (the compose sample's receiver echoes every
/// request), so without this the attempt log would hold the <c>Authorization</c> header the worker
/// sent. Redacted, case-insensitively:
/// <list type="bullet">
/// <item>the value of every header the subscription configures, wherever it appears (the whole
/// value, the credential after a scheme such as <c>Bearer</c>, and the start of one cut off by the
/// end of the excerpt), once it is at least <see cref="MinKnownValueLength"/> characters long;</item>
/// <item>the value after a credential-like name (one containing <c>auth</c>, <c>cookie</c>,
/// <c>token</c>, <c>secret</c>, <c>password</c>, <c>passwd</c>, <c>signature</c>,
/// <c>credential</c>, <c>session</c>, <c>jwt</c> or <c>apikey</c>, or <c>key</c> as a whole word
/// or after <c>-</c>/<c>_</c>), in the forms receivers echo it: a header line
/// (<c>Authorization: …</c>, to the end of the line), a quoted JSON or Python key with a string
/// value or a list of them (<c>"x-api-key": "…"</c>), and a query or form parameter
/// (<c>access_token=…</c>);</item>
/// <item><c>Bearer …</c> and <c>Basic …</c> credentials anywhere, and JSON Web Tokens (<c>eyJ….….…</c>).</item>
/// </list>
/// Over-redacting an error message costs a little of its use; under-redacting leaks a credential
/// into a table that operators and the console read, so the patterns err on the wide side.
/// </remarks>
internal static partial class ResponseExcerpt
{
    /// <summary>How much of a response body is read, and the most characters kept.</summary>
    public const int MaxBytes = 1024;

    /// <summary>What a redacted value becomes.</summary>
    public const string Redacted = "[redacted]";

    /// <summary>
    /// Shorter configured header values (<c>application/json</c> is longer, but a tenant name or
    /// <c>1</c> is not a credential) are left to the name patterns; redacting them everywhere
    /// would blank out ordinary words.
    /// </summary>
    public const int MinKnownValueLength = 8;

    private const string Name = @"(?<![\w-])(?:[\w-]*(?:auth|cookie|token|secret|passw(?:or)?d|signature|credential|session|jwt|api-?key)[\w-]*|(?:[\w-]*[-_])?key)";

    /// <summary>
    /// The excerpt of <paramref name="utf8"/>, the start of a failed attempt's response body; null
    /// when it is empty. <paramref name="truncated"/>: the body went on beyond it.
    /// </summary>
    /// <param name="utf8">At most <see cref="MaxBytes"/> bytes.</param>
    /// <param name="truncated">The body was longer: a known value may be cut off at the end.</param>
    /// <param name="knownSecrets">The values of the headers the request carried that the subscription configured.</param>
    public static string? Create(ReadOnlySpan<byte> utf8, bool truncated, IReadOnlyList<string> knownSecrets)
    {
        if (utf8.IsEmpty)
        {
            return null;
        }

        var text = Encoding.UTF8.GetString(utf8[..Math.Min(utf8.Length, MaxBytes)]);
        try
        {
            text = Redact(text, truncated, knownSecrets);
        }
        catch (RegexMatchTimeoutException)
        {
            // Keep nothing rather than something unchecked.
            return Redacted;
        }

        return text.Length <= MaxBytes ? text : text[..MaxBytes];
    }

    /// <summary>Replaces every credential <paramref name="text"/> shows (see the remarks on the class).</summary>
    public static string Redact(string text, bool truncated, IReadOnlyList<string> knownSecrets)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(knownSecrets);
        foreach (var secret in KnownValues(knownSecrets))
        {
            text = text.Replace(secret, Redacted, StringComparison.OrdinalIgnoreCase);
            if (truncated)
            {
                text = RedactCutOffStart(text, secret);
            }
        }

        text = QuotedKey().Replace(text, m => $"{m.Groups["key"].Value}{m.Groups["quote"].Value}{Redacted}{m.Groups["quote"].Value}");
        text = HeaderLine().Replace(text, m => m.Groups["key"].Value + Redacted);
        text = Parameter().Replace(text, m => m.Groups["key"].Value + Redacted);
        text = Credential().Replace(text, m => $"{m.Groups["scheme"].Value} {Redacted}");
        text = JsonWebToken().Replace(text, Redacted);
        return text;
    }

    /// <summary>
    /// Each configured value long enough to be told apart, and the credential after its scheme,
    /// each as sent and in the forms a receiver echoes it in (<see cref="EchoedForms"/>).
    /// </summary>
    private static IEnumerable<string> KnownValues(IReadOnlyList<string> values)
    {
        // Longest first, so that a whole value goes before a part of it.
        return values
            .SelectMany(v => v.IndexOf(' ', StringComparison.Ordinal) is var space and > 0 ? [v, v[(space + 1)..].Trim()] : new[] { v.Trim() })
            .Where(v => v.Length >= MinKnownValueLength)
            .SelectMany(EchoedForms)
            .Distinct(StringComparer.OrdinalIgnoreCase)
            .OrderByDescending(v => v.Length);
    }

    /// <summary>
    /// <paramref name="value"/> as sent, escaped in a JSON string (<c>+</c> as <c>\u002B</c>, as
    /// .NET and Go write it; <c>/</c> as <c>\/</c>, as PHP does) and percent-encoded (a query or
    /// form echoed back): case does not matter, the replacement ignores it.
    /// </summary>
    private static IEnumerable<string> EchoedForms(string value)
    {
        var json = JsonEncodedText.Encode(value).Value;
        var percent = Uri.EscapeDataString(value);
        return [value, json, json.Replace("/", @"\/", StringComparison.Ordinal), value.Replace("/", @"\/", StringComparison.Ordinal),
                percent, percent.Replace("%20", "+", StringComparison.Ordinal)];
    }

    /// <summary>A body cut off in the middle of <paramref name="secret"/> ends with its start.</summary>
    private static string RedactCutOffStart(string text, string secret)
    {
        for (var length = Math.Min(secret.Length - 1, text.Length); length >= 4; length--)
        {
            if (text.AsSpan(text.Length - length).Equals(secret.AsSpan(0, length), StringComparison.OrdinalIgnoreCase))
            {
                return string.Concat(text.AsSpan(0, text.Length - length), Redacted);
            }
        }

        return text;
    }

    // "authorization": "Bearer x" or 'authorization': 'Bearer x' (JSON, Python reprs); escaped quotes included.
    [GeneratedRegex($$"""(?<key>(?<q>["']){{Name}}\k<q>\s*:\s*(?:\[\s*)?)(?<quote>["'])(?:(?!\k<quote>)[^\\]|\\.)*\k<quote>""", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, matchTimeoutMilliseconds: 1000)]
    private static partial Regex QuotedKey();

    // Authorization: Bearer x, to the end of the line (header dumps, text error pages).
    [GeneratedRegex($$"""(?<key>{{Name}}[ \t]*:[ \t]*)[^\r\n]+""", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, matchTimeoutMilliseconds: 1000)]
    private static partial Regex HeaderLine();

    // access_token=x (query strings, form bodies), to the next separator.
    [GeneratedRegex($$"""(?<key>{{Name}}=)[^&\s"'<>]+""", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, matchTimeoutMilliseconds: 1000)]
    private static partial Regex Parameter();

    // Bearer x / Basic x anywhere: RFC 6750 and RFC 7617 credentials (token68).
    [GeneratedRegex("""\b(?<scheme>Bearer|Basic)[ \t]+(?!\[redacted\])[A-Za-z0-9\-._~+/]+=*""", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, matchTimeoutMilliseconds: 1000)]
    private static partial Regex Credential();

    // header.payload.signature, base64url, the header starting with {" (eyJ).
    [GeneratedRegex("""eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*""", RegexOptions.CultureInvariant, matchTimeoutMilliseconds: 1000)]
    private static partial Regex JsonWebToken();
}
