using System.Reflection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using TriggerEvents.Worker.Delivery;

namespace TriggerEvents.Cli.Hosting;

/// <summary>
/// The worker's OpenTelemetry tracing (SPEC "Worker", Tracing): spans of delivery attempts
/// (<see cref="DeliveryTracing"/>) exported over OTLP when the standard
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (or <c>OTEL_EXPORTER_OTLP_TRACES_ENDPOINT</c>) is set, and
/// nothing at all otherwise.
/// </summary>
/// <remarks>
/// Off means no tracer provider, so no activity listener: the delivery path pays one
/// <c>HasListeners</c> check per attempt. The exporter reads the other standard variables itself
/// from the host's configuration (<c>OTEL_EXPORTER_OTLP_HEADERS</c>, <c>_TIMEOUT</c>,
/// <c>OTEL_BSP_*</c>). Npgsql's own spans are not subscribed: the worker's
/// queries (claims and result writes) each serve many events at once, so they belong to no
/// delivery's trace and would only be a stream of root spans, one per claim round.
/// </remarks>
internal static class Tracing
{
    /// <summary>The service name when neither <c>OTEL_SERVICE_NAME</c> nor <c>OTEL_RESOURCE_ATTRIBUTES</c> gives one.</summary>
    public const string DefaultServiceName = "triggerevents";

    private const string EndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";
    private const string TracesEndpointVariable = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    private const string ProtocolVariable = "OTEL_EXPORTER_OTLP_PROTOCOL";
    private const string TracesProtocolVariable = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";

    /// <summary>Where spans go, or null when tracing is off.</summary>
    /// <param name="Endpoint">The collector's endpoint as configured.</param>
    /// <param name="Protocol"><c>grpc</c> (the exporter's default) or <c>http/protobuf</c>.</param>
    /// <param name="ForTraces">It came from <c>OTEL_EXPORTER_OTLP_TRACES_ENDPOINT</c>: the full URL, used as it is.</param>
    public sealed record Settings(Uri Endpoint, string Protocol, bool ForTraces);

    /// <summary>
    /// Reads the standard variables from <paramref name="configuration"/>; null when no endpoint is
    /// set or <c>OTEL_SDK_DISABLED=true</c>. A value the exporter cannot use is a
    /// <see cref="UsageException"/> here rather than spans silently lost later.
    /// </summary>
    public static Settings? Read(IConfiguration configuration)
    {
        if (string.Equals(configuration["OTEL_SDK_DISABLED"]?.Trim(), "true", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        var (name, value) = NonEmpty(configuration, TracesEndpointVariable) is { } traces
            ? (TracesEndpointVariable, traces)
            : (EndpointVariable, NonEmpty(configuration, EndpointVariable));
        if (value is null)
        {
            return null;
        }

        if (!Uri.TryCreate(value, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https"))
        {
            throw new UsageException($"{name} must be an http:// or https:// URL of an OpenTelemetry collector, not '{value}'");
        }

        var protocolName = NonEmpty(configuration, TracesProtocolVariable) is not null ? TracesProtocolVariable : ProtocolVariable;
        var protocol = NonEmpty(configuration, protocolName) ?? "grpc";
        if (protocol is not ("grpc" or "http/protobuf"))
        {
            throw new UsageException($"{protocolName} must be grpc or http/protobuf (the OTLP protocols the worker's exporter speaks), not '{protocol}'");
        }

        return new Settings(endpoint, protocol, name == TracesEndpointVariable);
    }

    /// <summary>Registers the tracer provider with the host: started with it, flushed and stopped with it.</summary>
    public static void Add(IServiceCollection services, IConfiguration configuration, Settings settings)
    {
        var version = typeof(Tracing).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0];
        services.AddOpenTelemetry()
            .ConfigureResource(resource =>
            {
                // The SDK's default is "unknown_service:<process>"; a name the operator gave wins.
                if (NonEmpty(configuration, "OTEL_SERVICE_NAME") is null && !NamesService(configuration["OTEL_RESOURCE_ATTRIBUTES"]))
                {
                    resource.AddService(DefaultServiceName, serviceVersion: version);
                }
            })
            .WithTracing(tracing => tracing
                .AddSource(DeliveryTracing.SourceName)
                .AddOtlpExporter(otlp =>
                {
                    // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT and _PROTOCOL itself (and adds
                    // /v1/traces for HTTP) but not their _TRACES_ forms: the protocol is set from
                    // what was read above, and a traces endpoint as the full URL it is.
                    otlp.Protocol = settings.Protocol == "http/protobuf" ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
                    if (settings.ForTraces)
                    {
                        otlp.Endpoint = settings.Endpoint;
                    }
                }));
    }

    private static string? NonEmpty(IConfiguration configuration, string name) =>
        configuration[name] is { } value && !string.IsNullOrWhiteSpace(value) ? value.Trim() : null;

    /// <summary>True when <c>OTEL_RESOURCE_ATTRIBUTES</c> (<c>key=value,…</c>) sets <c>service.name</c>.</summary>
    private static bool NamesService(string? attributes)
    {
        foreach (var pair in (attributes ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals > 0 && pair.AsSpan(0, equals).Trim().SequenceEqual("service.name"))
            {
                return true;
            }
        }

        return false;
    }
}
