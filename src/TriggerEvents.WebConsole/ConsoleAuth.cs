using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace TriggerEvents.WebConsole;

/// <summary>
/// Who may use the console, and protection of its actions against other sites.
/// <list type="bullet">
/// <item>With a token: a browser signs in once at <c>/signin</c> and gets an HttpOnly, SameSite=Strict
/// cookie holding an HMAC of the token (not the token itself); API clients send
/// <c>Authorization: Bearer &lt;token&gt;</c>. Anything else gets 401 (pages: the sign-in page).</item>
/// <item>Every action is a POST that must carry the <see cref="ActionHeader"/> header: a page of
/// another site cannot set a custom header on a cross-site request without a CORS preflight, which
/// the console never answers, and a form post cannot set one at all. A POST whose <c>Origin</c>
/// is another host is refused as well.</item>
/// <item>Without a token, only requests addressed to a loopback name (<c>Host</c> localhost or a
/// loopback address) are answered: a page of another site whose name its DNS points at
/// 127.0.0.1 afterwards (DNS rebinding) is of the same origin as the console in the browser, and
/// would pass both checks above.</item>
/// </list>
/// </summary>
internal sealed class ConsoleAuth(ConsoleOptions options)
{
    /// <summary>The header every action must carry.</summary>
    public const string ActionHeader = "X-TriggerEvents-Console";

    /// <summary>The session cookie's name.</summary>
    public const string CookieName = "triggerevents_console";

    private readonly byte[]? token = options.Token is null ? null : Encoding.UTF8.GetBytes(options.Token);

    private readonly string? session = options.Token is null ? null : SessionValue(options.Token);

    /// <summary>Whether sign-in is needed at all.</summary>
    public bool Required => token is not null;

    /// <summary>Whether the request carries the token (Bearer) or the session cookie.</summary>
    public bool IsSignedIn(HttpRequest request)
    {
        if (token is null)
        {
            return true;
        }

        var authorization = request.Headers.Authorization.ToString();
        if (authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return Matches(authorization["Bearer ".Length..].Trim());
        }

        return request.Cookies.TryGetValue(CookieName, out var cookie) && session is not null &&
               CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(cookie), Encoding.ASCII.GetBytes(session));
    }

    /// <summary>
    /// Null when the request may be answered; otherwise why not. With a token, any name: the
    /// token is what protects, and a rebound name has no session cookie. Without one, a
    /// <c>Host</c> of localhost or a loopback address, on any port (a forwarded port differs from
    /// the console's own). A request without a <c>Host</c> comes from no browser.
    /// </summary>
    public string? CheckHost(HttpRequest request)
    {
        if (token is not null || !request.Host.HasValue)
        {
            return null;
        }

        var name = request.Host.Host;
        if (string.Equals(name, "localhost", StringComparison.OrdinalIgnoreCase) ||
            (IPAddress.TryParse(name.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address)))
        {
            return null;
        }

        return $"this console answers only to localhost or a loopback address, not to {name}: " +
               $"to serve it under another name, set {ConsoleOptions.TokenVariable}";
    }

    /// <summary>Whether <paramref name="candidate"/> is the token, compared in constant time.</summary>
    public bool Matches(string candidate) =>
        token is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(candidate), token);

    /// <summary>Sets the session cookie after a successful sign-in.</summary>
    public void SignIn(HttpResponse response) =>
        response.Cookies.Append(CookieName, session!, new CookieOptions
        {
            HttpOnly = true,
            SameSite = SameSiteMode.Strict,
            Path = "/",
            IsEssential = true,
        });

    /// <summary>
    /// Null when a state-changing request may proceed; otherwise why not. Requires the action
    /// header, and an Origin (when the browser sends one) of this very host.
    /// </summary>
    public static string? CheckCrossSite(HttpRequest request, bool requireHeader)
    {
        if (requireHeader && !request.Headers.ContainsKey(ActionHeader))
        {
            return $"actions need the {ActionHeader} header (the console's pages send it)";
        }

        var origin = request.Headers.Origin.ToString();
        if (origin.Length > 0 && origin != "null" &&
            (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) ||
             !string.Equals(uri.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase)))
        {
            return $"a request from {origin} may not act on this console";
        }

        return null;
    }

    private static string SessionValue(string secret) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), "triggerevents console session v1"u8));
}
