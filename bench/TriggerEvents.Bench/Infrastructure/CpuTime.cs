using System.Diagnostics;
using System.Globalization;

namespace TriggerEvents.Bench.Infrastructure;

/// <summary>
/// CPU time (user + system) spent by processes, read from /proc: what one phase of a benchmark
/// cost each party, which is steadier on a shared machine than a rate.
/// </summary>
internal static class CpuTime
{
    private const double TicksPerSecond = 100; // USER_HZ: 100 on every Linux this runs on

    /// <summary>CPU time of one process so far.</summary>
    public static TimeSpan OfProcess(int pid) => ReadStat(pid) is { } stat ? stat.Cpu : TimeSpan.Zero;

    /// <summary>CPU time of this benchmark process so far.</summary>
    public static TimeSpan OfThisProcess()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    /// <summary>
    /// CPU time so far of a PostgreSQL server: the postmaster and every process it started
    /// (backends, WAL writer, autovacuum). Backends that have exited are not counted; the
    /// worker's pooled connections live for the whole phase.
    /// </summary>
    public static TimeSpan OfServer(string dataDirectory)
    {
        var postmaster = int.Parse(File.ReadLines(Path.Combine(dataDirectory, "postmaster.pid")).First(), CultureInfo.InvariantCulture);
        var total = OfProcess(postmaster);
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) &&
                ReadStat(pid) is { } stat && stat.ParentPid == postmaster)
            {
                total += stat.Cpu;
            }
        }

        return total;
    }

    private static (int ParentPid, TimeSpan Cpu)? ReadStat(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException)
        {
            return null; // exited meanwhile
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }

        // The command name is in parentheses and may hold spaces: count fields after the last ')'.
        var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return (int.Parse(fields[1], CultureInfo.InvariantCulture), TimeSpan.FromSeconds(ticks / TicksPerSecond));
    }
}
