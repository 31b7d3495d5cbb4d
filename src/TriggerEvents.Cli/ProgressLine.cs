namespace TriggerEvents.Cli;

/// <summary>
/// Progress of long work (replay, cleanup, large dead retries): a bar redrawn in place on a
/// terminal, plain lines when output is redirected (logs stay readable, one line per step).
/// </summary>
internal sealed class ProgressLine(string verb, long? total) : IProgress<long>, IDisposable
{
    private const int Width = 30;
    private readonly bool terminal = !Console.IsOutputRedirected;
    private long last = -1;

    public void Report(long value)
    {
        if (value == last)
        {
            return;
        }

        last = value;
        if (!terminal)
        {
            Console.WriteLine(total is > 0 ? $"{verb} {value:N0}/{total:N0}" : $"{verb} {value:N0}");
            return;
        }

        if (total is > 0)
        {
            var filled = (int)Math.Min(Width, value * Width / total.Value);
            Console.Write($"\r{verb} [{new string('#', filled)}{new string('.', Width - filled)}] {value:N0}/{total:N0} ");
        }
        else
        {
            Console.Write($"\r{verb} {value:N0} ");
        }
    }

    public void Dispose()
    {
        if (terminal && last >= 0)
        {
            Console.WriteLine();
        }
    }
}
