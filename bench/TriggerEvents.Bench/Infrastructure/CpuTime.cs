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
    /// CPU time so far of a PostgreSQL server: the postmaster, every process it started
    /// (backends, WAL writer, autovacuum) that still runs, and those that have exited, which the
    /// postmaster has waited for and the kernel counts as its children's time. Without the
    /// last, a phase in which backends exited (a connection pool trimmed, an autovacuum worker
    /// done) read less at its end than at its start: a negative server CPU.
    /// </summary>
    public static TimeSpan OfServer(string dataDirectory)
    {
        var postmaster = int.Parse(File.ReadLines(Path.Combine(dataDirectory, "postmaster.pid")).First(), CultureInfo.InvariantCulture);
        var total = TimeSpan.Zero;
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) &&
                ReadStat(pid) is { } stat && stat.ParentPid == postmaster)
            {
                total += stat.Cpu;
            }
        }

        // After the children: one that exits in between is counted twice for this instant
        // rather than not at all.
        return ReadStat(postmaster) is { } server ? total + server.Cpu + server.ExitedChildrenCpu : total;
    }

    private static (int ParentPid, TimeSpan Cpu, TimeSpan ExitedChildrenCpu)? ReadStat(int pid)
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
        // Fields 14 to 17 of proc(5): utime, stime, and cutime, cstime (children waited for).
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        var childTicks = long.Parse(fields[13], CultureInfo.InvariantCulture) + long.Parse(fields[14], CultureInfo.InvariantCulture);
        return (int.Parse(fields[1], CultureInfo.InvariantCulture), TimeSpan.FromSeconds(ticks / TicksPerSecond),
            TimeSpan.FromSeconds(childTicks / TicksPerSecond));
    }
}
