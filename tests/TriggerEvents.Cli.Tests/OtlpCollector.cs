using System.Collections.Concurrent;
using System.IO.Compression;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace TriggerEvents.Cli.Tests;

/// <summary>
/// A minimal OpenTelemetry collector on 127.0.0.1: OTLP/HTTP with protobuf bodies
/// (<c>POST /v1/traces</c>, <c>OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf</c>), or OTLP/gRPC
/// (the <c>TraceService/Export</c> call over cleartext HTTP/2, the exporter's default protocol),
/// decoding each export into <see cref="OtlpSpan"/>s with <see cref="OtlpTraceReader"/>.
/// </summary>
internal sealed class OtlpCollector : IAsyncDisposable
{
    private const string GrpcExport = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    private readonly WebApplication app;
    private readonly ConcurrentQueue<OtlpSpan> spans = new();
    private int exports;

    private OtlpCollector(WebApplication app) => this.app = app;

    /// <summary>The base URL, as <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> takes it (the exporter adds <c>/v1/traces</c>).</summary>
    public Uri Endpoint { get; private set; } = null!;

    public IReadOnlyCollection<OtlpSpan> Spans => spans;

    /// <summary>Requests received on any path, decodable or not.</summary>
    public int Exports => Volatile.Read(ref exports);

    /// <summary>Requests that were not a protobuf trace export to /v1/traces (their description).</summary>
    public ConcurrentQueue<string> Rejected { get; } = new();

    /// <summary>Starts a collector for OTLP/HTTP, or with <paramref name="grpc"/> for OTLP/gRPC.</summary>
    public static async Task<OtlpCollector> StartAsync(bool grpc = false)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        // gRPC without TLS is HTTP/2 with prior knowledge, which Kestrel speaks on an Http2-only endpoint.
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.Protocols = grpc ? HttpProtocols.Http2 : HttpProtocols.Http1));
        var app = builder.Build();
        var collector = new OtlpCollector(app);
        app.Run(grpc ? collector.HandleGrpcAsync : collector.HandleAsync);
        await app.StartAsync();
        collector.Endpoint = new Uri(app.Urls.First());
        return collector;
    }

    /// <summary>Waits until <paramref name="condition"/> holds over the spans received, failing after the deadline.</summary>
    public async Task WaitUntilAsync(Func<IReadOnlyCollection<OtlpSpan>, bool> condition, TimeSpan timeout, string what)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (!condition(spans))
        {
            try
            {
                await Task.Delay(20, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"Waited {timeout} for {what}; {spans.Count} spans in {Exports} exports received, rejected: {string.Join("; ", Rejected)}");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }

    /// <summary>
    /// One unary gRPC call: the request is one message in gRPC's framing (a compressed flag and
    /// a 4-byte big-endian length), the answer an empty message and <c>grpc-status: 0</c>.
    /// </summary>
    private async Task HandleGrpcAsync(HttpContext context)
    {
        Interlocked.Increment(ref exports);
        var request = context.Request;
        if (request.Method != HttpMethods.Post || request.Path != GrpcExport || request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) != true)
        {
            Rejected.Enqueue($"{request.Protocol} {request.Method} {request.Path} {request.ContentType}");
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }

        using var body = new MemoryStream();
        await request.Body.CopyToAsync(body);
        var frame = body.ToArray();
        var status = "0";
        if (frame.Length < 5 || frame[0] != 0 || System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(frame.AsSpan(1)) != frame.Length - 5)
        {
            Rejected.Enqueue($"a gRPC frame of {frame.Length} bytes that is not one uncompressed message");
            status = "3";
        }
        else
        {
            try
            {
                foreach (var span in OtlpTraceReader.Read(frame[5..]))
                {
                    spans.Enqueue(span);
                }
            }
            catch (FormatException e)
            {
                Rejected.Enqueue("undecodable export: " + e.Message);
                status = "3";
            }
        }

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/grpc";
        if (status == "0")
        {
            // An empty ExportTraceServiceResponse.
            await context.Response.Body.WriteAsync(new byte[5]);
        }

        context.Response.AppendTrailer("grpc-status", status);
    }

    private async Task HandleAsync(HttpContext context)
    {
        Interlocked.Increment(ref exports);
        var request = context.Request;
        if (request.Method != HttpMethods.Post || request.Path != "/v1/traces" ||
            !string.Equals(request.ContentType, "application/x-protobuf", StringComparison.OrdinalIgnoreCase))
        {
            Rejected.Enqueue($"{request.Method} {request.Path} {request.ContentType}");
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return;
        }

        using var body = new MemoryStream();
        var source = string.Equals(request.Headers.ContentEncoding, "gzip", StringComparison.OrdinalIgnoreCase)
            ? new GZipStream(request.Body, CompressionMode.Decompress)
            : request.Body;
        await using (source)
        {
            await source.CopyToAsync(body);
        }

        try
        {
            foreach (var span in OtlpTraceReader.Read(body.ToArray()))
            {
                spans.Enqueue(span);
            }
        }
        catch (FormatException e)
        {
            Rejected.Enqueue("undecodable export: " + e.Message);
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return;
        }

        // An empty ExportTraceServiceResponse: everything accepted.
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/x-protobuf";
    }
}
