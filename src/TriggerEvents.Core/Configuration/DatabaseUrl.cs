using System.Data.Common;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// <c>TRIGGER_EVENTS_DATABASE_URL</c>: a libpq-style URI
/// (<c>postgres://user:pass@host:5432/db?sslmode=require</c>) or an Npgsql connection string
/// (<c>Host=...;Database=...</c>), turned into the latter.
/// </summary>
/// <remarks>
/// <para>
/// Written here, without Npgsql, so that Core stays free of database drivers. The URI follows libpq:
/// several hosts (<c>h1:5432,h2:5433</c>), IPv6 in brackets, a Unix socket directory percent-encoded
/// as the host or given as <c>?host=/var/run/postgresql</c>, and query parameters overriding the
/// parts before them. Special characters in the user name and password must be percent-encoded
/// (<c>@</c> as <c>%40</c>, <c>/</c> as <c>%2F</c>).
/// </para>
/// <para>
/// Query parameters are mapped to Npgsql keywords where the meaning is the same; any other parameter
/// is an error rather than dropped, since a silently ignored <c>sslmode</c> typo would be a security
/// problem. Error messages never quote the URL, which holds the password.
/// </para>
/// </remarks>
internal static partial class DatabaseUrl
{
    private static readonly Dictionary<string, string> Keywords = new(StringComparer.Ordinal)
    {
        ["host"] = "Host",
        ["port"] = "Port",
        ["dbname"] = "Database",
        ["user"] = "Username",
        ["password"] = "Password",
        ["sslmode"] = "SSL Mode",
        ["application_name"] = "Application Name",
        ["connect_timeout"] = "Timeout",
        ["options"] = "Options",
        ["sslrootcert"] = "Root Certificate",
        ["sslcert"] = "SSL Certificate",
        ["sslkey"] = "SSL Key",
        ["sslpassword"] = "SSL Password",
        ["target_session_attrs"] = "Target Session Attributes",
        ["channel_binding"] = "Channel Binding",
        ["gssencmode"] = "GSS Encryption Mode",
    };

    // libpq spells these values in lower case with dashes; Npgsql wants its enum names.
    private static readonly Dictionary<string, Dictionary<string, string>> EnumValues = new(StringComparer.Ordinal)
    {
        ["sslmode"] = new(StringComparer.OrdinalIgnoreCase)
        {
            ["disable"] = "Disable",
            ["allow"] = "Allow",
            ["prefer"] = "Prefer",
            ["require"] = "Require",
            ["verify-ca"] = "VerifyCA",
            ["verify-full"] = "VerifyFull",
        },
        ["channel_binding"] = new(StringComparer.OrdinalIgnoreCase)
        {
            ["disable"] = "Disable",
            ["prefer"] = "Prefer",
            ["require"] = "Require",
        },
        ["gssencmode"] = new(StringComparer.OrdinalIgnoreCase)
        {
            ["disable"] = "Disable",
            ["prefer"] = "Prefer",
            ["require"] = "Require",
        },
    };

    /// <summary>
    /// The Npgsql connection string for <paramref name="value"/>: a <c>postgres://</c> or
    /// <c>postgresql://</c> URI is converted, a <c>Keyword=value;...</c> string is returned unchanged.
    /// </summary>
    /// <exception cref="ArgumentException">Neither form, or a URI that is not valid; the message says what and never quotes the password.</exception>
    public static string ToConnectionString(string value)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new ArgumentException("The database URL is empty: set TRIGGER_EVENTS_DATABASE_URL to a postgres:// URI or an Npgsql connection string.");
        }

        var trimmed = value.Trim();
        var scheme = SchemePattern().Match(trimmed);
        if (scheme.Success)
        {
            var name = scheme.Groups[1].Value;
            if (name.Equals("postgres", StringComparison.OrdinalIgnoreCase) || name.Equals("postgresql", StringComparison.OrdinalIgnoreCase))
            {
                return FromUri(trimmed[scheme.Length..]);
            }

            throw new ArgumentException($"The database URL has the scheme '{name}': use postgres:// or postgresql://, or an Npgsql connection string (Host=...;Database=...).");
        }

        if (!trimmed.Contains('=', StringComparison.Ordinal))
        {
            throw new ArgumentException("The database URL is neither a postgres:// URI nor an Npgsql connection string (Host=...;Database=...).");
        }

        return value;
    }

    private static string FromUri(string rest)
    {
        if (rest.Contains('#', StringComparison.Ordinal))
        {
            throw Invalid("it has a '#' (percent-encode it as %23 in a password)");
        }

        var queryStart = rest.IndexOf('?', StringComparison.Ordinal);
        var query = queryStart < 0 ? "" : rest[(queryStart + 1)..];
        var beforeQuery = queryStart < 0 ? rest : rest[..queryStart];
        var pathStart = beforeQuery.IndexOf('/', StringComparison.Ordinal);
        var authority = pathStart < 0 ? beforeQuery : beforeQuery[..pathStart];
        var path = pathStart < 0 ? "" : beforeQuery[(pathStart + 1)..];

        var settings = new List<KeyValuePair<string, string>>();

        // The host cannot hold an '@', so the last one ends the user info and a stray '@' in a
        // password still parses.
        var at = authority.LastIndexOf('@');
        var userInfo = at < 0 ? "" : authority[..at];
        var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
        var user = Decode(colon < 0 ? userInfo : userInfo[..colon], "user name");
        var password = colon < 0 ? "" : Decode(userInfo[(colon + 1)..], "password");

        ReadHosts(authority[(at + 1)..], settings);
        Set(settings, "Database", Decode(path, "database name"));
        Set(settings, "Username", user);
        Set(settings, "Password", password);
        ReadQuery(query, settings);

        if (!settings.Exists(setting => setting.Key == "Host"))
        {
            throw Invalid("it names no host");
        }

        var builder = new StringBuilder();
        foreach (var (keyword, setting) in settings)
        {
            DbConnectionStringBuilder.AppendKeyValuePair(builder, keyword, setting);
        }

        return builder.ToString();
    }

    private static void ReadHosts(string authority, List<KeyValuePair<string, string>> settings)
    {
        if (authority.Length == 0)
        {
            return;
        }

        var hosts = new List<(string Host, string? Port)>();
        foreach (var part in authority.Split(','))
        {
            string host;
            string? port = null;
            if (part.StartsWith('['))
            {
                var close = part.IndexOf(']', StringComparison.Ordinal);
                if (close < 0)
                {
                    throw Invalid("an IPv6 host has no closing ']'");
                }

                host = part[1..close];
                var after = part[(close + 1)..];
                if (after.Length > 0)
                {
                    port = after.StartsWith(':') ? after[1..] : throw Invalid("an IPv6 host is followed by something other than ':port'");
                }
            }
            else
            {
                var colon = part.IndexOf(':', StringComparison.Ordinal);
                host = Decode(colon < 0 ? part : part[..colon], "host");
                port = colon < 0 ? null : part[(colon + 1)..];
            }

            if (host.Length == 0)
            {
                throw Invalid(hosts.Count == 0 && port is null && authority.Split(',').Length == 1
                    ? "it names no host"
                    : "one of its hosts is empty");
            }

            if (port is not null)
            {
                CheckPort(port);
            }

            hosts.Add((host, port));
        }

        if (hosts.Count == 1)
        {
            Set(settings, "Host", hosts[0].Host);
            Set(settings, "Port", hosts[0].Port ?? "");
            return;
        }

        // Npgsql takes several hosts in one Host setting, each with its own port.
        Set(settings, "Host", string.Join(',', hosts.Select(h =>
        {
            var host = h.Host.Contains(':', StringComparison.Ordinal) ? $"[{h.Host}]" : h.Host;
            return h.Port is null ? host : $"{host}:{h.Port}";
        })));
    }

    private static void ReadQuery(string query, List<KeyValuePair<string, string>> settings)
    {
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw Invalid("a query parameter has no name=value form");
            }

            var name = Decode(pair[..equals], "query parameter name");
            var value = Decode(pair[(equals + 1)..], "query parameter");
            if (!Keywords.TryGetValue(name, out var keyword))
            {
                // A name is quoted only when it looks like one: a mangled URL might put part of the
                // password where a name would be.
                var shown = ParameterNamePattern().IsMatch(name) ? $"'{name}'" : "a query parameter";
                throw Invalid($"{shown} is not supported (supported: {string.Join(", ", Keywords.Keys)}); use an Npgsql connection string for other settings");
            }

            if (EnumValues.TryGetValue(name, out var values))
            {
                value = values.TryGetValue(value, out var mapped)
                    ? mapped
                    : throw Invalid($"{name} must be one of {string.Join(", ", values.Keys)}");
            }
            else if (name == "port")
            {
                CheckPort(value);
            }
            else if (name == "connect_timeout" && !int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            {
                throw Invalid("connect_timeout must be a whole number of seconds");
            }

            Set(settings, keyword, value);
        }
    }

    private static void CheckPort(string port)
    {
        if (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number is < 1 or > 65535)
        {
            throw Invalid("its port is not a number from 1 to 65535");
        }
    }

    // Later settings replace earlier ones (libpq: the query overrides the URI); an empty value
    // removes the setting, leaving Npgsql's default.
    private static void Set(List<KeyValuePair<string, string>> settings, string keyword, string value)
    {
        var index = settings.FindIndex(setting => setting.Key == keyword);
        if (index >= 0)
        {
            settings.RemoveAt(index);
        }

        if (value.Length > 0)
        {
            settings.Insert(index >= 0 ? index : settings.Count, new(keyword, value));
        }
    }

    private static string Decode(string text, string what)
    {
        // Uri.UnescapeDataString leaves a malformed escape as it is; check so "%zz" is an error.
        for (var i = text.IndexOf('%', StringComparison.Ordinal); i >= 0; i = text.IndexOf('%', i + 1))
        {
            if (i + 2 >= text.Length || !char.IsAsciiHexDigit(text[i + 1]) || !char.IsAsciiHexDigit(text[i + 2]))
            {
                throw Invalid($"its {what} has a '%' that is not followed by two hex digits (write '%' as %25)");
            }
        }

        return Uri.UnescapeDataString(text);
    }

    private static ArgumentException Invalid(string problem) => new($"The database URL is not valid: {problem}.");

    [GeneratedRegex(@"^([A-Za-z][A-Za-z0-9+.-]*)://", RegexOptions.CultureInvariant)]
    private static partial Regex SchemePattern();

    [GeneratedRegex(@"^[A-Za-z_]{1,40}\z", RegexOptions.CultureInvariant)]
    private static partial Regex ParameterNamePattern();
}
