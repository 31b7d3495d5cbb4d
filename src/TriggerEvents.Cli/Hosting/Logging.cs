using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace TriggerEvents.Cli.Hosting;

/// <summary>
/// Serilog set-up: readable lines on a terminal, compact JSON (one event per line) when
/// TRIGGER_EVENTS_LOG_FORMAT=json or when output is not a terminal (containers, files).
/// </summary>
internal static class Logging
{
    public static Serilog.Core.Logger Create(bool verbose)
    {
        var format = Environment.GetEnvironmentVariable("TRIGGER_EVENTS_LOG_FORMAT");
        var json = string.Equals(format, "json", StringComparison.OrdinalIgnoreCase) ||
                   (!string.Equals(format, "text", StringComparison.OrdinalIgnoreCase) && Console.IsOutputRedirected);
        var configuration = new LoggerConfiguration()
            .MinimumLevel.Is(verbose ? LogEventLevel.Debug : LogEventLevel.Information)
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
            .MinimumLevel.Override("System.Net.Http", LogEventLevel.Warning)
            .Enrich.FromLogContext();
        configuration = json
            ? configuration.WriteTo.Console(new CompactJsonFormatter())
            : configuration.WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}{Exception}");
        return configuration.CreateLogger();
    }
}
