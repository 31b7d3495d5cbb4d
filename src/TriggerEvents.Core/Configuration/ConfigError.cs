using System.Globalization;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// One problem found in a configuration file, at a 1-based line and column. Formats as
/// <c>file:line:col: message</c>, the form compilers use, so editors and CI annotate the line.
/// </summary>
/// <remarks>
/// Line and column are 0 when the problem is not at a place in the file (it cannot be read);
/// the text is then <c>file: message</c>. Messages never contain a secret's or a header's value.
/// </remarks>
internal sealed record ConfigError(string File, int Line, int Column, string Message)
{
    /// <inheritdoc />
    public override string ToString() =>
        Line > 0
            ? string.Create(CultureInfo.InvariantCulture, $"{File}:{Line}:{Column}: {Message}")
            : $"{File}: {Message}";
}
