using System.Net;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// A stand-in OpenTelemetry collector on 127.0.0.1 for the tracing rounds of the delivery
/// benchmark: OTLP/HTTP (<c>POST /v1/traces</c>, protobuf), answered 200 at once, counting
/// exports, bytes and spans. It runs in the benchmark process, so its CPU is counted with the
/// receiver's.
/// </summary>
internal sealed class OtlpSink : IDisposable
{
    private readonly HttpListener listener = new();
    private readonly Task loop;
    private long exports;
    private long bytes;
    private long spans;

    private OtlpSink(int port)
    {
        Endpoint = new Uri($"http://127.0.0.1:{port}/");
        listener.Prefixes.Add(Endpoint.ToString());
        listener.Start();
        loop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>The value for <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (the exporter adds <c>/v1/traces</c>).</summary>
    public Uri Endpoint { get; }

    public static OtlpSink Start() => new(Loopback.FreePort());

    /// <summary>Exports, bytes and spans received since the last call.</summary>
    public (long Exports, long Bytes, long Spans) Take() =>
        (Interlocked.Exchange(ref exports, 0), Interlocked.Exchange(ref bytes, 0), Interlocked.Exchange(ref spans, 0));

    /// <summary>Waits until at least <paramref name="count"/> spans arrived since the last <see cref="Take"/>, or the timeout.</summary>
    public async Task<bool> WaitForSpansAsync(long count, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            while (Interlocked.Read(ref spans) < count)
            {
                await Task.Delay(50, deadline.Token);
            }

            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    public void Dispose()
    {
        listener.Close();
        try
        {
            loop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
            // The accept loop ends with the listener closed under it.
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            _ = Task.Run(() => Handle(context));
        }
    }

    private void Handle(HttpListenerContext context)
    {
        using var body = new MemoryStream();
        context.Request.InputStream.CopyTo(body);
        Interlocked.Increment(ref exports);
        Interlocked.Add(ref bytes, body.Length);
        try
        {
            Interlocked.Add(ref spans, CountSpans(body.GetBuffer().AsSpan(0, (int)body.Length)));
            context.Response.StatusCode = 200;
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentOutOfRangeException)
        {
            // Not an OTLP export: answered 400 and counted as an export without spans.
            context.Response.StatusCode = 400;
        }

        context.Response.ContentType = "application/x-protobuf";
        context.Response.Close();
    }

    /// <summary>
    /// Spans in an ExportTraceServiceRequest: field 1 (ResourceSpans) → field 2 (ScopeSpans) →
    /// field 2 (Span), walked in the protobuf wire format without decoding anything else.
    /// </summary>
    private static long CountSpans(ReadOnlySpan<byte> export)
    {
        long count = 0;
        foreach (var resourceSpans in Messages(export, 1))
        {
            foreach (var scopeSpans in Messages(export.Slice(resourceSpans.Start, resourceSpans.Length), 2))
            {
                foreach (var _ in Messages(export.Slice(resourceSpans.Start + scopeSpans.Start, scopeSpans.Length), 2))
                {
                    count++;
                }
            }
        }

        return count;
    }

    /// <summary>Where each length-delimited field <paramref name="number"/> of a message is; other fields skipped.</summary>
    private static List<(int Start, int Length)> Messages(ReadOnlySpan<byte> message, int number)
    {
        var found = new List<(int, int)>();
        var position = 0;
        while (position < message.Length)
        {
            var tag = Varint(message, ref position);
            switch (tag & 7)
            {
                case 0:
                    Varint(message, ref position);
                    break;
                case 1:
                    position += 8;
                    break;
                case 2:
                    var length = (int)Varint(message, ref position);
                    if ((int)(tag >> 3) == number)
                    {
                        found.Add((position, length));
                    }

                    position += length;
                    break;
                case 5:
                    position += 4;
                    break;
                default:
                    throw new InvalidDataException($"wire type {tag & 7} in an OTLP export");
            }
        }

        return found;
    }

    private static ulong Varint(ReadOnlySpan<byte> bytes, ref int position)
    {
        ulong value = 0;
        for (var shift = 0; position < bytes.Length && shift < 64; shift += 7)
        {
            var b = bytes[position++];
            value |= (ulong)(b & 0x7f) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }

        throw new InvalidDataException("a truncated varint in an OTLP export");
    }
}
