using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace TriggerEvents.Testing;

/// <summary>One request the receiver got.</summary>
/// <param name="Attempt">How many times this webhook-id has arrived, this one included.</param>
/// <param name="Status">What the receiver answered; 0 when the client gave up before the answer.</param>
public sealed record ReceivedRequest(
    string Path, string WebhookId, long? EventId, IReadOnlyDictionary<string, string> Headers, byte[] Body, DateTimeOffset ReceivedAt, int Attempt,
    int Status = 0)
{
    public bool Succeeded => Status is >= 200 and <= 299;

    public string BodyText => System.Text.Encoding.UTF8.GetString(Body);
}

/// <summary>What the receiver answers to one request: after <paramref name="Until"/> completes (when given), then after <paramref name="Delay"/>.</summary>
public sealed record ReceiverResponse(
    int Status, TimeSpan Delay = default, IReadOnlyDictionary<string, string>? Headers = null, string? Body = null, Task? Until = null)
{
    public static readonly ReceiverResponse Ok = new(200);
}

/// <summary>
/// A real HTTP server on 127.0.0.1 (Kestrel) that records every webhook request. By default it
/// answers 200; <see cref="Respond"/> decides per request, given how many times that
/// webhook-id has been seen (1 for the first attempt).
/// </summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly ConcurrentQueue<ReceivedRequest> requests = new();
    private readonly ConcurrentDictionary<string, int> attemptsById = new();

    private WebhookReceiver(WebApplication app) => this.app = app;

    /// <summary>Decides the response; the default answers 200 at once.</summary>
    public Func<ReceivedRequest, ReceiverResponse> Respond { get; set; } = _ => ReceiverResponse.Ok;

    /// <summary>
    /// Called once per request, in its handler, right before its answer is written, or when its
    /// client gave up during the answer's delay: from then on the request is no longer open.
    /// </summary>
    public Action<ReceivedRequest>? Answering { get; set; }

    public Uri BaseUrl { get; private set; } = null!;

    public Uri Url(string path = "/hook") => new(BaseUrl, path);

    public IReadOnlyCollection<ReceivedRequest> Requests => requests;

    public static async Task<WebhookReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http1);
            k.Limits.MaxRequestBodySize = 64 * 1024 * 1024;
        });
        var app = builder.Build();
        var receiver = new WebhookReceiver(app);
        app.Run(receiver.HandleAsync);
        await app.StartAsync();
        receiver.BaseUrl = new Uri(app.Urls.First());
        return receiver;
    }

    /// <summary>Distinct events received with a 2xx answer, by event id.</summary>
    public IReadOnlyList<long> DeliveredEventIds(string? path = null) =>
        [.. requests.Where(r => r.Succeeded && (path is null || r.Path == path) && r.EventId is not null).Select(r => r.EventId!.Value).Distinct()];

    /// <summary>Events answered 2xx more than once (duplicates a receiver would drop by webhook-id).</summary>
    public int DuplicateDeliveries => requests.Where(r => r.Succeeded).GroupBy(r => r.WebhookId).Sum(g => g.Count() - 1);

    /// <summary>Waits until <paramref name="condition"/> holds, checking every 20 ms, failing after the deadline.</summary>
    public async Task WaitUntilAsync(Func<WebhookReceiver, bool> condition, TimeSpan timeout, string what)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (!condition(this))
        {
            try
            {
                await Task.Delay(20, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"Waited {timeout} for {what}; {requests.Count} requests received.");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }

    private async Task HandleAsync(HttpContext context)
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        var headers = context.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString());
        var webhookId = headers.GetValueOrDefault("webhook-id", "");
        var attempt = attemptsById.AddOrUpdate(webhookId, 1, (_, n) => n + 1);
        long? eventId = null;
        try
        {
            using var json = System.Text.Json.JsonDocument.Parse(body.ToArray());
            eventId = long.Parse(json.RootElement.GetProperty("id").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            // Not a webhook body; recorded with no event id.
        }

        var request = new ReceivedRequest(context.Request.Path, webhookId, eventId, headers, body.ToArray(), DateTimeOffset.UtcNow, attempt);
        var response = Respond(request);
        if (response.Delay > TimeSpan.Zero || response.Until is not null)
        {
            try
            {
                await (response.Until ?? Task.CompletedTask).WaitAsync(context.RequestAborted);
                await Task.Delay(response.Delay, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                Answering?.Invoke(request);
                requests.Enqueue(request);
                return;
            }
        }

        Answering?.Invoke(request);
        context.Response.StatusCode = response.Status;
        foreach (var (name, value) in response.Headers ?? new Dictionary<string, string>())
        {
            context.Response.Headers[name] = value;
        }

        if (response.Body is not null)
        {
            await context.Response.WriteAsync(response.Body);
        }

        requests.Enqueue(request with { Status = response.Status });
    }
}
