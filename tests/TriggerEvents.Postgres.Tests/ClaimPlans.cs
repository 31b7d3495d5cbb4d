namespace TriggerEvents.Postgres.Tests;

/// <summary>Reading the claim's EXPLAIN output.</summary>
internal static class ClaimPlans
{
    /// <summary>
    /// The Sort nodes whose input reads a table rather than the claim's own candidates: a sort of
    /// the queue. The claim sorts its candidates (at most a claim's rows, in memory) to group them
    /// into requests (migration 000009); that is not one.
    /// </summary>
    public static List<string> SortsOverTables(IReadOnlyList<string> plan)
    {
        var found = new List<string>();
        for (var i = 0; i < plan.Count; i++)
        {
            var node = plan[i].TrimStart().TrimStart('-', '>', ' ');
            if (!node.StartsWith("Sort ", StringComparison.Ordinal) && !node.StartsWith("Incremental Sort ", StringComparison.Ordinal))
            {
                continue;
            }

            var depth = Depth(plan[i]);
            for (var j = i + 1; j < plan.Count && Depth(plan[j]) > depth; j++)
            {
                if (plan[j].Contains(" Scan ", StringComparison.Ordinal) && !plan[j].Contains("CTE Scan", StringComparison.Ordinal) &&
                    !plan[j].Contains("Subquery Scan", StringComparison.Ordinal))
                {
                    found.Add(plan[i]);
                    break;
                }
            }
        }

        return found;
    }

    private static int Depth(string line) => line.Length - line.TrimStart(' ', '-', '>').Length;
}
