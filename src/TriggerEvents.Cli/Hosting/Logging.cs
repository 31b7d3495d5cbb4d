using Serilog;
using Serilog.Events;
using Serilog.Formatting;
using Serilog.Formatting.Compact;

namespace TriggerEvents.Cli.Hosting;

/// <summary>
/// Serilog set-up: readable lines on a terminal, compact JSON (one event per line) when
/// TRIGGER_EVENTS_LOG_FORMAT=json or when output is not a terminal (containers, files).
/// Without --verbose no event carries a stack trace: errors are one line, as everywhere else.
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
            // The host logs its own start-up failure (a port in use) before throwing it, and the
            // command then prints it as its one error line: the host's copy only with --verbose.
            .MinimumLevel.Override("Microsoft.Extensions.Hosting", verbose ? LogEventLevel.Warning : LogEventLevel.Fatal)
            .Enrich.FromLogContext();
        configuration = json
            ? configuration.WriteTo.Console(verbose ? new CompactJsonFormatter() : new WithoutException(new CompactJsonFormatter()))
            : configuration.WriteTo.Console(outputTemplate: verbose
                ? "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}{Exception}"
                : "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}");
        return configuration.CreateLogger();
    }

    /// <summary>Formats each event as <paramref name="inner"/> does, without its exception.</summary>
    private sealed class WithoutException(ITextFormatter inner) : ITextFormatter
    {
        public void Format(LogEvent logEvent, TextWriter output)
        {
            if (logEvent.Exception is not null)
            {
                logEvent = new LogEvent(
                    logEvent.Timestamp, logEvent.Level, null, logEvent.MessageTemplate,
                    logEvent.Properties.Select(p => new LogEventProperty(p.Key, p.Value)), logEvent.TraceId ?? default, logEvent.SpanId ?? default);
            }

            inner.Format(logEvent, output);
        }
    }
}
