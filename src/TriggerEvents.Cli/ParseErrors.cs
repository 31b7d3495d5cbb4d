using System.CommandLine;

namespace TriggerEvents.Cli;

/// <summary>
/// The one line for a command line the parser refused: an unknown command gets the nearest known
/// one, a group without its command lists them, anything else joins the parser's messages.
/// </summary>
internal static class ParseErrors
{
    public static string Describe(ParseResult parsed)
    {
        var command = parsed.CommandResult.Command;
        var path = CommandPath(parsed);
        var help = $"see '{path} --help'";
        if (command.Subcommands.Count > 0 && command.Action is null)
        {
            var names = command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name).ToList();
            var token = parsed.UnmatchedTokens.FirstOrDefault(t => !t.StartsWith('-'));
            if (token is null)
            {
                return $"'{path}' needs a command: {string.Join(", ", names)}; {help}";
            }

            return Nearest(token, names) is { } nearest
                ? $"unknown command '{token}': did you mean '{path} {nearest}'? {help}"
                : $"unknown command '{token}': the commands are {string.Join(", ", names)}; {help}";
        }

        var messages = parsed.Errors.Select(e => e.Message.TrimEnd('.')).Distinct();
        return $"{string.Join("; ", messages)}; {help}";
    }

    /// <summary>"triggerevents dead", as the user typed it up to the command that failed.</summary>
    private static string CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (var result = parsed.CommandResult; result is not null; result = result.Parent as System.CommandLine.Parsing.CommandResult)
        {
            names.Insert(0, result.Command is RootCommand ? "triggerevents" : result.Command.Name);
        }

        return string.Join(' ', names);
    }

    /// <summary>The known name closest to <paramref name="typed"/>: one it starts, else one a few edits away.</summary>
    internal static string? Nearest(string typed, IReadOnlyList<string> names)
    {
        var prefixed = names.Where(n => n.StartsWith(typed, StringComparison.OrdinalIgnoreCase)).ToList();
        if (prefixed.Count == 1)
        {
            return prefixed[0];
        }

        return names
            .Select(name => (Name: name, Distance: EditDistance(typed.ToLowerInvariant(), name)))
            .Where(candidate => candidate.Distance <= Math.Max(2, candidate.Name.Length / 3))
            .OrderBy(candidate => candidate.Distance)
            .Select(candidate => candidate.Name)
            .FirstOrDefault();
    }

    // Optimal string alignment distance: a swap of two neighbours ("stauts") counts as one edit.
    private static int EditDistance(string a, string b)
    {
        var d = new int[a.Length + 1][];
        for (var i = 0; i <= a.Length; i++)
        {
            d[i] = new int[b.Length + 1];
            d[i][0] = i;
        }

        for (var j = 0; j <= b.Length; j++)
        {
            d[0][j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i][j] = Math.Min(Math.Min(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    d[i][j] = Math.Min(d[i][j], d[i - 2][j - 2] + 1);
                }
            }
        }

        return d[a.Length][b.Length];
    }
}
