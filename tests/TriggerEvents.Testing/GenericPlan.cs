using Npgsql;

namespace TriggerEvents.Testing;

/// <summary>
/// The generic plan of a statement, the one the worker's hot path runs
/// (<c>plan_cache_mode = force_generic_plan</c>): PREPAREd on <paramref name="connection"/> and
/// explained for the given argument literals. An EXPLAIN with bound values shows the custom plan
/// made for those values instead, on PostgreSQL 15.
/// </summary>
public static class GenericPlan
{
    /// <param name="connection">Left with <c>plan_cache_mode = force_generic_plan</c>; settings made on it before apply.</param>
    /// <param name="sql">The statement, with its parameters as <c>$1</c>, <c>$2</c>, ...</param>
    /// <param name="parameters">Each parameter's type and an SQL literal for it, in order (<c>("int[]", "'{1,2}'")</c>, ...).</param>
    public static async Task<List<string>> ExplainAsync(NpgsqlConnection connection, string sql, params (string Type, string Value)[] parameters)
    {
        var name = $"generic_plan_{Guid.NewGuid():N}";
        var types = string.Join(", ", parameters.Select(p => p.Type));
        await using (var prepare = new NpgsqlCommand($"SET plan_cache_mode = force_generic_plan; PREPARE {name}({types}) AS {sql}", connection))
        {
            await prepare.ExecuteNonQueryAsync();
        }

        var plan = new List<string>();
        await using (var explain = new NpgsqlCommand($"EXPLAIN EXECUTE {name}({string.Join(", ", parameters.Select(p => p.Value))})", connection))
        await using (var reader = await explain.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                plan.Add(reader.GetString(0));
            }
        }

        await using (var deallocate = new NpgsqlCommand($"DEALLOCATE {name}", connection))
        {
            await deallocate.ExecuteNonQueryAsync();
        }

        return plan;
    }
}
