using System.Text;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// <c>${VAR}</c> and <c>${VAR:-default}</c> in scalar values, as in a shell or Docker Compose:
/// the default applies when the variable is unset or empty, and <c>$$</c> is a literal <c>$</c>.
/// </summary>
/// <remarks>
/// Substitution runs on values after YAML parsing, so a variable's value is never read as YAML:
/// a secret with a <c>:</c> or <c>#</c> in it stays one string. A <c>$</c> followed by anything
/// else is kept as written. A default is literal text up to the first <c>}</c>; it is not substituted
/// again. Error messages name the variable, never a value.
/// </remarks>
internal static class EnvironmentSubstitution
{
    /// <summary>
    /// Substitutes <paramref name="text"/>. Returns null and sets <paramref name="error"/> when a
    /// variable is missing or a reference is malformed.
    /// </summary>
    public static string? TrySubstitute(string text, Func<string, string?> environment, out string? error)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(environment);
        error = null;
        if (!text.Contains('$', StringComparison.Ordinal))
        {
            return text;
        }

        var result = new StringBuilder(text.Length);
        var i = 0;
        while (i < text.Length)
        {
            var c = text[i];
            if (c != '$' || i + 1 >= text.Length)
            {
                result.Append(c);
                i++;
                continue;
            }

            var next = text[i + 1];
            if (next == '$')
            {
                result.Append('$');
                i += 2;
                continue;
            }

            if (next != '{')
            {
                result.Append(c);
                i++;
                continue;
            }

            var close = text.IndexOf('}', i + 2);
            if (close < 0)
            {
                error = "'${' without a closing '}' (write '$$' for a literal '$')";
                return null;
            }

            var reference = text.AsSpan(i + 2, close - i - 2);
            var separator = reference.IndexOf(":-", StringComparison.Ordinal);
            var name = separator < 0 ? reference : reference[..separator];
            if (!IsVariableName(name))
            {
                // The text is not echoed: it may sit inside a secret or a header value.
                error = "a '${...}' reference holds no valid variable name (letters, digits and '_', not starting with a digit; write '$$' for a literal '$')";
                return null;
            }

            var value = environment(name.ToString());
            if (separator >= 0)
            {
                result.Append(string.IsNullOrEmpty(value) ? reference[(separator + 2)..] : value);
            }
            else if (value is null)
            {
                error = $"environment variable '{name}' is not set and has no default (write ${{{name}:-default}} to give one)";
                return null;
            }
            else
            {
                result.Append(value);
            }

            i = close + 1;
        }

        return result.ToString();
    }

    private static bool IsVariableName(ReadOnlySpan<char> name)
    {
        if (name.IsEmpty || char.IsAsciiDigit(name[0]))
        {
            return false;
        }

        foreach (var c in name)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c != '_')
            {
                return false;
            }
        }

        return true;
    }
}
