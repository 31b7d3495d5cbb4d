using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace TriggerEvents.Bench.Delivery;

/// <summary>
/// The webhook receiver the worker posts to: Kestrel on 127.0.0.1, answers 204 at once, and
/// notes for each request its event id, when it arrived and its end-to-end latency (arrival
/// minus the body's created_at, the capture time by the database clock on this machine).
/// </summary>
internal sealed class BenchReceiver : IAsyncDisposable
{
    /// <summary>One request: the event it carried, when it arrived, and how long after its capture.</summary>
    public sealed record Arrival(long EventId, DateTimeOffset At, double LatencyMs);

    private static readonly byte[] IdMarker = "\"id\":\""u8.ToArray();
    private static readonly byte[] CreatedMarker = "\"created_at\":\""u8.ToArray();

    private readonly WebApplication app;
    private readonly ConcurrentDictionary<long, byte> seen = new();
    private ConcurrentQueue<Arrival> arrivals = new();
    private long requests;

    private BenchReceiver(WebApplication app) => this.app = app;

    public Uri Url { get; private set; } = null!;

    public long Requests => Interlocked.Read(ref requests);

    public int DistinctEvents => seen.Count;

    public static async Task<BenchReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http1));
        var app = builder.Build();
        var receiver = new BenchReceiver(app);
        app.Run(receiver.HandleAsync);
        await app.StartAsync();
        receiver.Url = new Uri(new Uri(app.Urls.First()), "/hook");
        return receiver;
    }

    /// <summary>Forgets what arrived so far and returns it.</summary>
    public IReadOnlyList<Arrival> TakeArrivals()
    {
        var taken = Interlocked.Exchange(ref arrivals, new ConcurrentQueue<Arrival>());
        seen.Clear();
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
        await app.StopAsync();
        await app.DisposeAsync();
    }

    private async Task HandleAsync(HttpContext context)
    {
        var arrived = DateTimeOffset.UtcNow;
        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer);
        Interlocked.Increment(ref requests);
        var body = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        if (TryReadEvent(body, out var id, out var createdAt))
        {
            seen.TryAdd(id, 0);
            arrivals.Enqueue(new Arrival(id, arrived, (arrived - createdAt).TotalMilliseconds));
        }

        context.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    private static bool TryReadEvent(ReadOnlySpan<byte> body, out long id, out DateTimeOffset createdAt)
    {
        id = 0;
        createdAt = default;
        var idAt = body.IndexOf(IdMarker);
        var createdAtAt = body.IndexOf(CreatedMarker);
        if (idAt < 0 || createdAtAt < 0)
        {
            return false;
        }

        var idText = body[(idAt + IdMarker.Length)..];
        var createdText = body[(createdAtAt + CreatedMarker.Length)..];
        return Utf8Parser.TryParse(idText[..idText.IndexOf((byte)'"')], out id, out _) &&
               DateTimeOffset.TryParse(System.Text.Encoding.UTF8.GetString(createdText[..createdText.IndexOf((byte)'"')]), System.Globalization.CultureInfo.InvariantCulture, out createdAt);
    }
}
