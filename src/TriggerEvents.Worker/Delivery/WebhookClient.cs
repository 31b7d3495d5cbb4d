using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using System.Reflection;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery;

/// <summary>What one HTTP attempt produced.</summary>
internal sealed record AttemptOutcome(
    DeliveryOutcome Outcome, TimeSpan? RetryAfter, string? ResponseExcerpt, DateTimeOffset StartedAt, TimeSpan Duration);

/// <summary>
/// Posts events to one subscription's webhook: one pooled connection handler per target,
/// redirects not followed, the subscription's timeout per request, Standard Webhooks
/// signatures computed at send time.
/// </summary>
internal sealed class WebhookClient : IDisposable
{
    /// <summary>How much of a response body is kept with the attempt record.</summary>
    public const int ResponseExcerptBytes = 1024;

    public static readonly string UserAgent =
        "triggerevents/" + (typeof(WebhookClient).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0");

    private readonly SubscriptionConfig subscription;
    private readonly HttpClient client;
    private readonly WebhookSigner? signer;
    private readonly TimeProvider time;

    public WebhookClient(SubscriptionConfig subscription, int maxConnections, TimeProvider time)
    {
        this.subscription = subscription;
        this.time = time;
        signer = subscription.Webhook.SigningSecrets.Count > 0 ? new WebhookSigner(subscription.Webhook.SigningSecrets) : null;
        client = new HttpClient(new SocketsHttpHandler
        {
            // A 3xx is a failed attempt (SPEC): the target must be configured with its final URL.
            AllowAutoRedirect = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
            MaxConnectionsPerServer = Math.Max(1, maxConnections),
            // Re-resolve DNS now and then so a moved target is followed without a restart.
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            ConnectTimeout = subscription.Webhook.Timeout,
        })
        {
            // The per-request timeout is the subscription's, applied with a token below.
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    public SubscriptionConfig Subscription => subscription;

    /// <summary>Posts <paramref name="body"/> (see <see cref="EventBodies"/>), which the caller still disposes.</summary>
    public async Task<AttemptOutcome> SendAsync(ClaimedDelivery delivery, RequestBody body, CancellationToken cancellationToken)
    {
        var startedAt = time.GetUtcNow();
        var started = time.GetTimestamp();
        using var request = new HttpRequestMessage(HttpMethod.Post, subscription.Webhook.Url)
        {
            Content = new RequestBody.Content(body),
            Version = HttpVersion.Version11,
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.TryAddWithoutValidation("User-Agent", UserAgent);
        foreach (var (name, value) in subscription.Webhook.Headers)
        {
            if (!request.Headers.TryAddWithoutValidation(name, value))
            {
                request.Content.Headers.TryAddWithoutValidation(name, value);
            }
        }

        var messageId = WebhookId.For(delivery.Event.Id, subscription.Name);
        var timestamp = startedAt.ToUnixTimeSeconds();
        request.Headers.TryAddWithoutValidation("webhook-id", messageId);
        request.Headers.TryAddWithoutValidation("webhook-timestamp", timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (signer is not null)
        {
            request.Headers.TryAddWithoutValidation("webhook-signature", signer.Sign(messageId, timestamp, body.Sequence));
        }

        if (delivery.Event.TraceParent is { } traceparent)
        {
            request.Headers.TryAddWithoutValidation("traceparent", traceparent);
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(subscription.Webhook.Timeout);
        try
        {
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            string? excerpt;
            try
            {
                excerpt = await ReadExcerptAsync(response, timeout.Token);
            }
            catch (Exception e) when (e is HttpRequestException or IOException ||
                                      (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                // The status line is the receiver's answer: a body still coming at the timeout, or
                // cut off, does not undo a 2xx (retrying would deliver the event twice).
                excerpt = null;
            }

            TimeSpan? retryAfter = null;
            if (response.Headers.TryGetValues("Retry-After", out var values) &&
                RetryAfter.TryParse(values.FirstOrDefault(), time.GetUtcNow(), out var delay))
            {
                retryAfter = delay;
            }

            return new AttemptOutcome(DeliveryOutcome.Response((int)response.StatusCode), retryAfter, excerpt, startedAt, time.GetElapsedTime(started));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new AttemptOutcome(DeliveryOutcome.Timeout(subscription.Webhook.Timeout), null, null, startedAt, time.GetElapsedTime(started));
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            // The message names the host and the failure, never a header value.
            return new AttemptOutcome(DeliveryOutcome.ConnectionError(e.Message), null, null, startedAt, time.GetElapsedTime(started));
        }
    }

    public void Dispose() => client.Dispose();

    private static async Task<string?> ReadExcerptAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength == 0)
        {
            // A 204, or an empty 200: the common answer, with nothing to keep.
            return null;
        }

        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        var buffer = ArrayPool<byte>.Shared.Rent(ResponseExcerptBytes);
        try
        {
            var read = 0;
            int n;
            while (read < ResponseExcerptBytes && (n = await stream.ReadAsync(buffer.AsMemory(read, ResponseExcerptBytes - read), cancellationToken)) > 0)
            {
                read += n;
            }

            return read == 0 ? null : System.Text.Encoding.UTF8.GetString(buffer, 0, read);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
