namespace TriggerEvents.Cli;

/// <summary>Plain aligned columns for humans; scripts use --json.</summary>
internal static class TextTable
{
    public static void Write(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = new List<IReadOnlyList<string>> { headers };
        all.AddRange(rows);
        var widths = headers.Select((_, i) => all.Max(r => r[i].Length)).ToArray();
        foreach (var row in all)
        {
            Console.WriteLine(string.Join("  ", row.Select((cell, i) => i == row.Count - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd());
        }

        if (all.Count == 1)
        {
            Console.WriteLine("(none)");
        }
    }
}
