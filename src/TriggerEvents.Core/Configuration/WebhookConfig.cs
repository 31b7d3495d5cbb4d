using System.Text;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// <c>webhook:</c> of a subscription: the target and what each request carries (SPEC "Webhook request").
/// </summary>
/// <remarks>
/// <see cref="ToString"/> shows the URL's scheme, host and port, names the headers and counts the
/// secrets, but prints no path, query, header value or secret, so logging a configuration object
/// cannot leak them.
/// </remarks>
internal sealed record WebhookConfig
{
    /// <summary>Default for <see cref="Timeout"/>.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    /// <summary><c>url</c> (required): an absolute <c>http</c> or <c>https</c> URL, without user info or fragment.</summary>
    public required Uri Url { get; init; }

    /// <summary>
    /// <c>headers</c>: extra request headers, names compared ignoring case. Headers the engine sets
    /// itself (<c>Content-Type</c>, <c>User-Agent</c>, <c>webhook-*</c>, <c>traceparent</c>, and the
    /// framing headers) cannot be configured.
    /// </summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } =
        new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

    /// <summary><c>timeout</c>: the whole request, connect to last byte of the response; default <see cref="DefaultTimeout"/>.</summary>
    public TimeSpan Timeout { get; init; } = DefaultTimeout;

    /// <summary>
    /// <c>signing_secret</c>: the <c>whsec_...</c> secrets, in the order written; every one signs
    /// each request, so a new secret can be added before the old is removed. Empty (the key left
    /// out, or <c>none</c>): no signature. An empty value is an error, never "unsigned".
    /// </summary>
    public IReadOnlyList<string> SigningSecrets { get; init; } = [];

    private bool PrintMembers(StringBuilder builder)
    {
        // Only scheme, host and port: a path or query may hold a token (as in Slack-style URLs).
        builder.Append("Url = ").Append(Url.GetComponents(UriComponents.SchemeAndServer, UriFormat.UriEscaped)).Append("/...")
            .Append(", Headers = [").AppendJoin(", ", Headers.Keys).Append(']')
            .Append(", Timeout = ").Append(Duration.Format(Timeout))
            .Append(", SigningSecrets = ").Append(SigningSecrets.Count).Append(" secret(s)");
        return true;
    }
}
