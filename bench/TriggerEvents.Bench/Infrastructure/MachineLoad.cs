namespace TriggerEvents.Bench.Infrastructure;

/// <summary>
/// The 1/5/15-minute load averages, printed before and after a run: the benchmark shares the
/// machine's cores with whatever else runs, and a load well above zero at the start means the
/// figures were taken on a busy machine.
/// </summary>
internal static class MachineLoad
{
    public static string Describe()
    {
        const string path = "/proc/loadavg";
        if (!File.Exists(path))
        {
            return "unknown";
        }

        var fields = File.ReadAllText(path).Split(' ');
        return fields.Length >= 3 ? $"{fields[0]} {fields[1]} {fields[2]} (1, 5, 15 min)" : "unknown";
    }
}
