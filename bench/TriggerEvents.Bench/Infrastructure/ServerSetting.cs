namespace TriggerEvents.Bench.Infrastructure;

/// <summary>The <c>--set name=value</c> option both benchmarks take.</summary>
internal static class ServerSetting
{
    /// <summary>Checks one setting: LocalCluster passes it on a command line, so it cannot hold spaces.</summary>
    public static string Parse(string text) =>
        text.Contains('=', StringComparison.Ordinal) && !text.Contains(' ', StringComparison.Ordinal)
            ? text
            : throw new ArgumentException($"--set takes name=value without spaces, not '{text}'.");
}
