using System.Buffers;
using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// The webhook receiver the worker posts to: a minimal HTTP/1.1 server on 127.0.0.1 that answers
/// every request 204 at once, and notes for each event it carries its id, when it arrived and its end-to-end
/// latency (arrival minus the body's created_at, the capture time by the database clock on this
/// machine).
/// </summary>
/// <remarks>
/// It shares the two cores with the worker and PostgreSQL, so what it spends per request is
/// taken from them. Kestrel spent about 48 µs of CPU per request here, a quarter of a drain's
/// whole budget; a receiver that only reads a request and writes a fixed answer spends far less
/// (the figures in bench/README.md). It speaks what the worker and the ceiling load send:
/// keep-alive HTTP/1.1 requests with a Content-Length. Anything else (chunked bodies, a
/// malformed request) is answered with an error and the connection closed, so it cannot pass
/// for a delivery.
/// </remarks>
internal sealed class BenchReceiver : IAsyncDisposable
{
    /// <summary>One request: the event it carried, when it arrived, and how long after its capture.</summary>
    public sealed record Arrival(long EventId, DateTimeOffset At, double LatencyMs);

    private const int MaxRequestBytes = 1 << 20;

    private static readonly byte[] HeaderEnd = "\r\n\r\n"u8.ToArray();
    private static readonly byte[] NoContent = "HTTP/1.1 204 No Content\r\n\r\n"u8.ToArray();
    private static readonly byte[] BadRequest = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray();
    private static readonly byte[] NotImplemented = "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray();
    private static readonly byte[] IdMarker = "\"id\":\""u8.ToArray();
    private static readonly byte[] CreatedMarker = "\"created_at\":\""u8.ToArray();

    private readonly Socket listener;
    private readonly CancellationTokenSource stopping = new();
    private readonly ConcurrentDictionary<Socket, byte> connections = new();
    private readonly ConcurrentDictionary<long, byte> seen = new();
    private readonly Task acceptLoop;
    private ConcurrentQueue<Arrival> arrivals = new();
    private long requests;

    private BenchReceiver(Socket listener)
    {
        this.listener = listener;
        Url = new Uri($"http://{listener.LocalEndPoint}/hook");
        acceptLoop = AcceptAsync();
    }

    public Uri Url { get; }

    public int DistinctEvents => seen.Count;

    /// <summary>Requests answered since the last <see cref="TakeArrivals"/>; fewer than events when they carry batches.</summary>
    public long Requests => Interlocked.Read(ref requests);

    public static BenchReceiver Start()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1024);
        return new BenchReceiver(listener);
    }

    /// <summary>Forgets what arrived so far and returns it.</summary>
    public IReadOnlyList<Arrival> TakeArrivals()
    {
        var taken = Interlocked.Exchange(ref arrivals, new ConcurrentQueue<Arrival>());
        seen.Clear();
        Interlocked.Exchange(ref requests, 0);
        return [.. taken];
    }

    public async Task WaitForDistinctAsync(int count, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        while (seen.Count < count)
        {
            await Task.Delay(10, deadline.Token);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await stopping.CancelAsync();
        listener.Dispose();
        foreach (var connection in connections.Keys)
        {
            connection.Dispose();
        }

        await acceptLoop;
        stopping.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await listener.AcceptAsync(stopping.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            connection.NoDelay = true;
            connections[connection] = 0;
            _ = Task.Run(() => ServeAsync(connection));
        }
    }

    /// <summary>Answers the requests of one connection in order until the client closes it.</summary>
    private async Task ServeAsync(Socket connection)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        var filled = 0;
        try
        {
            while (true)
            {
                var request = Parse(buffer.AsSpan(0, filled));
                if (request.Status == ParseStatus.Incomplete)
                {
                    if (filled == buffer.Length)
                    {
                        // Parse refuses a request larger than MaxRequestBytes, so this stays under it.
                        var larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        buffer.AsSpan(0, filled).CopyTo(larger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = larger;
                    }

                    var read = await connection.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, stopping.Token);
                    if (read == 0)
                    {
                        return;
                    }

                    filled += read;
                    continue;
                }

                if (request.Status != ParseStatus.Complete)
                {
                    await connection.SendAsync(request.Status == ParseStatus.Unsupported ? NotImplemented : BadRequest, SocketFlags.None, stopping.Token);
                    return;
                }

                Record(buffer.AsSpan(request.BodyStart, request.Length - request.BodyStart));
                await connection.SendAsync(NoContent, SocketFlags.None, stopping.Token);
                buffer.AsSpan(request.Length, filled - request.Length).CopyTo(buffer);
                filled -= request.Length;
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // Stopping, or the client went away.
        }
        finally
        {
            connections.TryRemove(connection, out _);
            connection.Dispose();
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Notes every event of a body: one for a single event, each element of a batch body
    /// (<c>{"batch": …, "events": [<event body>, …]}</c>) otherwise. An event body starts with
    /// its <c>id</c>, then its <c>created_at</c>.
    /// </summary>
    private void Record(ReadOnlySpan<byte> body)
    {
        var arrived = DateTimeOffset.UtcNow;
        Interlocked.Increment(ref requests);
        while (TryReadEvent(body, out var id, out var createdAt, out var consumed))
        {
            seen.TryAdd(id, 0);
            arrivals.Enqueue(new Arrival(id, arrived, (arrived - createdAt).TotalMilliseconds));
            body = body[consumed..];
        }
    }

    private enum ParseStatus { Incomplete, Complete, Malformed, Unsupported }

    /// <summary>A request at the start of the buffer: where its body starts and its whole length.</summary>
    private readonly record struct ParsedRequest(ParseStatus Status, int BodyStart = 0, int Length = 0);

    private static ParsedRequest Parse(ReadOnlySpan<byte> data)
    {
        var headerEnd = data.IndexOf(HeaderEnd);
        if (headerEnd < 0)
        {
            return new ParsedRequest(data.Length >= MaxRequestBytes ? ParseStatus.Malformed : ParseStatus.Incomplete);
        }

        var lines = data[..headerEnd];
        var requestLineEnd = lines.IndexOf("\r\n"u8);
        var requestLine = requestLineEnd < 0 ? lines : lines[..requestLineEnd];
        if (!requestLine.EndsWith(" HTTP/1.1"u8))
        {
            return new ParsedRequest(ParseStatus.Unsupported);
        }

        long contentLength = 0;
        var headers = requestLineEnd < 0 ? [] : lines[(requestLineEnd + 2)..];
        while (!headers.IsEmpty)
        {
            var end = headers.IndexOf("\r\n"u8);
            var line = end < 0 ? headers : headers[..end];
            headers = end < 0 ? [] : headers[(end + 2)..];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0)
            {
                return new ParsedRequest(ParseStatus.Malformed);
            }

            var name = line[..colon];
            var value = line[(colon + 1)..].Trim((byte)' ');
            if (Ascii.EqualsIgnoreCase(name, "Content-Length"u8))
            {
                if (!Utf8Parser.TryParse(value, out contentLength, out var consumed) || consumed != value.Length || contentLength < 0)
                {
                    return new ParsedRequest(ParseStatus.Malformed);
                }
            }
            else if (Ascii.EqualsIgnoreCase(name, "Transfer-Encoding"u8) || Ascii.EqualsIgnoreCase(name, "Expect"u8))
            {
                return new ParsedRequest(ParseStatus.Unsupported);
            }
        }

        var bodyStart = headerEnd + HeaderEnd.Length;
        if (contentLength > MaxRequestBytes - bodyStart)
        {
            return new ParsedRequest(ParseStatus.Malformed);
        }

        var length = bodyStart + (int)contentLength;
        return data.Length < length ? new ParsedRequest(ParseStatus.Incomplete) : new ParsedRequest(ParseStatus.Complete, bodyStart, length);
    }

    private static bool TryReadEvent(ReadOnlySpan<byte> body, out long id, out DateTimeOffset createdAt, out int consumed)
    {
        id = 0;
        createdAt = default;
        consumed = 0;
        var idAt = body.IndexOf(IdMarker);
        if (idAt < 0)
        {
            return false;
        }

        var idText = body[(idAt + IdMarker.Length)..];
        var createdAtAt = idText.IndexOf(CreatedMarker);
        if (createdAtAt < 0)
        {
            return false;
        }

        var createdText = idText[(createdAtAt + CreatedMarker.Length)..];
        var createdEnd = createdText.IndexOf((byte)'"');
        consumed = body.Length - createdText.Length + createdEnd;
        return Utf8Parser.TryParse(idText[..idText.IndexOf((byte)'"')], out id, out _) &&
               DateTimeOffset.TryParse(Encoding.UTF8.GetString(createdText[..createdEnd]), CultureInfo.InvariantCulture, out createdAt);
    }
}
