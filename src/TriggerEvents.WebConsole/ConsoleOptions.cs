using System.Globalization;
using System.Net;

namespace TriggerEvents.WebConsole;

/// <summary>
/// How the console is served. Loopback by default; any other address needs a <see cref="Token"/>
/// (<see cref="Validate"/>), which browsers present once through the sign-in page and API clients
/// as <c>Authorization: Bearer</c>.
/// </summary>
internal sealed record ConsoleOptions
{
    /// <summary>The environment variable that holds the token.</summary>
    public const string TokenVariable = "TRIGGER_EVENTS_CONSOLE_TOKEN";

    /// <summary>
    /// The environment variable with a link to a trace, <c>{trace_id}</c> replaced by the event's
    /// W3C trace id, for example <c>https://tempo.example/explore?traceId={trace_id}</c>.
    /// </summary>
    public const string TraceUrlVariable = "TRIGGER_EVENTS_TRACE_URL";

    /// <summary>Default for <see cref="Listen"/>.</summary>
    public static readonly IPEndPoint DefaultListen = new(IPAddress.Loopback, 8081);

    /// <summary>The address and port to listen on.</summary>
    public IPEndPoint Listen { get; init; } = DefaultListen;

    /// <summary>Hide every action and refuse them in the API (403).</summary>
    public bool ReadOnly { get; init; }

    /// <summary>The shared secret; null serves without sign-in (loopback only).</summary>
    public string? Token { get; init; }

    /// <summary>A link to a trace with <c>{trace_id}</c> in it; null shows the trace id without a link.</summary>
    public string? TraceUrlTemplate { get; init; }

    /// <summary>
    /// Options from the environment (token, trace link) for <paramref name="listen"/>; an empty
    /// variable counts as unset.
    /// </summary>
    public static ConsoleOptions FromEnvironment(IPEndPoint listen, bool readOnly) => new()
    {
        Listen = listen,
        ReadOnly = readOnly,
        Token = NullIfEmpty(Environment.GetEnvironmentVariable(TokenVariable)),
        TraceUrlTemplate = NullIfEmpty(Environment.GetEnvironmentVariable(TraceUrlVariable)),
    };

    /// <summary>
    /// Parses <c>HOST:PORT</c>, <c>[IPv6]:PORT</c> or a bare port (loopback). Hosts are IP
    /// addresses or <c>localhost</c>: the console binds to exactly one address, so that whether it
    /// is reachable from other machines is never a guess.
    /// </summary>
    public static IPEndPoint ParseListen(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var text = value.Trim();
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var bare))
        {
            return new IPEndPoint(IPAddress.Loopback, CheckPort(bare, value));
        }

        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port))
        {
            throw new FormatException($"--listen '{value}' is not HOST:PORT (for example 127.0.0.1:8081)");
        }

        var host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }

        IPAddress address;
        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            address = IPAddress.Loopback;
        }
        else if (!IPAddress.TryParse(host, out address!))
        {
            throw new FormatException($"--listen '{value}': '{host}' is not an IP address (or localhost)");
        }

        return new IPEndPoint(address, CheckPort(port, value));
    }

    /// <summary>The one-line reason these options may not be served, or null when they may.</summary>
    public string? Validate() =>
        IPAddress.IsLoopback(Listen.Address) || Token is not null
            ? null
            : $"the console would listen on {Listen}, which is not a loopback address: set {TokenVariable} to a secret that users sign in with, or listen on 127.0.0.1";

    private static int CheckPort(int port, string value) =>
        port is >= 1 and <= 65535 ? port : throw new FormatException($"--listen '{value}': the port must be 1 to 65535");

    private static string? NullIfEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;
}
