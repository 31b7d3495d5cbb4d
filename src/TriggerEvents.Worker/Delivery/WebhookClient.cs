using System.Buffers;
using System.Diagnostics;
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
/// signatures computed at send time. With <c>worker.deny_private_networks</c>, connections go
/// through <see cref="PrivateNetworkGuard"/>.
/// </summary>
internal sealed class WebhookClient : IDisposable
{
    public static readonly string UserAgent =
        "triggerevents/" + (typeof(WebhookClient).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0");

    private readonly SubscriptionConfig subscription;
    private readonly HttpClient client;
    private readonly WebhookSigner? signer;
    private readonly TimeProvider time;
    private readonly string[] headerValues;

    public WebhookClient(SubscriptionConfig subscription, int maxConnections, TimeProvider time, bool denyPrivateNetworks = false)
    {
        this.subscription = subscription;
        this.time = time;
        signer = subscription.Webhook.SigningSecrets.Count > 0 ? new WebhookSigner(subscription.Webhook.SigningSecrets) : null;
        headerValues = [.. subscription.Webhook.Headers.Values];
        var handler = new SocketsHttpHandler
        {
            // A 3xx is a failed attempt (SPEC): the target must be configured with its final URL.
            AllowAutoRedirect = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
            MaxConnectionsPerServer = Math.Max(1, maxConnections),
            // Re-resolve DNS now and then so a moved target is followed without a restart.
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            ConnectTimeout = subscription.Webhook.Timeout,
        };
        if (denyPrivateNetworks)
        {
            // Only when asked for: the default connect step stays on the hot path otherwise. A
            // proxy would make the connection, and resolve the name, out of the guard's sight.
            handler.ConnectCallback = PrivateNetworkGuard.ConnectAsync;
            handler.UseProxy = false;
        }

        client = new HttpClient(handler)
        {
            // The per-request timeout is the subscription's, applied with a token below.
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    public SubscriptionConfig Subscription => subscription;

    /// <summary>
    /// Posts <paramref name="body"/> (see <see cref="EventBodies"/>), which the caller still disposes;
    /// <paramref name="span"/> is the attempt's (<see cref="DeliveryTracing"/>), null when tracing is off.
    /// </summary>
    public Task<AttemptOutcome> SendAsync(ClaimedDelivery delivery, RequestBody body, Activity? span, CancellationToken cancellationToken) =>
        SendAsync(delivery, body, span, WebhookId.For(delivery.Event.Id, subscription.Name), cancellationToken);

    /// <summary>
    /// As above, under <paramref name="messageId"/>: a batch's request (<see cref="WebhookId.ForBatch"/>),
    /// with <paramref name="delivery"/> its first event, whose <c>traceparent</c> it carries.
    /// </summary>
    public async Task<AttemptOutcome> SendAsync(ClaimedDelivery delivery, RequestBody body, Activity? span, string messageId, CancellationToken cancellationToken)
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

        var timestamp = startedAt.ToUnixTimeSeconds();
        request.Headers.TryAddWithoutValidation("webhook-id", messageId);
        request.Headers.TryAddWithoutValidation("webhook-timestamp", timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (signer is not null)
        {
            request.Headers.TryAddWithoutValidation("webhook-signature", signer.Sign(messageId, timestamp, body.Sequence));
        }

        // The attempt's span when tracing is on; otherwise the writer's, only a valid one
        // (TraceParent): a malformed value is dropped, not forwarded.
        if (DeliveryTracing.TraceParentHeader(span, delivery.Event.TraceParent) is { } traceParent)
        {
            request.Headers.TryAddWithoutValidation("traceparent", traceParent);
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(subscription.Webhook.Timeout);
        try
        {
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            var outcome = DeliveryOutcome.Response((int)response.StatusCode);
            string? excerpt = null;
            try
            {
                // A success's body is not read at all (SPEC "Roles and secrets": only failed
                // attempts keep an excerpt); disposing the response drains it for the next request.
                if (!outcome.IsSuccess)
                {
                    excerpt = await ReadExcerptAsync(response, headerValues, timeout.Token);
                }
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

            return new AttemptOutcome(outcome, retryAfter, excerpt, startedAt, time.GetElapsedTime(started));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new AttemptOutcome(DeliveryOutcome.Timeout(subscription.Webhook.Timeout), null, null, startedAt, time.GetElapsedTime(started));
        }
        catch (Exception e) when (e is HttpRequestException or IOException && PrivateNetworkGuard.RefusalIn(e) is { } refused)
        {
            return new AttemptOutcome(DeliveryOutcome.Refused(refused.Message), null, null, startedAt, time.GetElapsedTime(started));
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            // The message names the host and the failure, never a header value.
            return new AttemptOutcome(DeliveryOutcome.ConnectionError(e.Message), null, null, startedAt, time.GetElapsedTime(started));
        }
    }

    public void Dispose() => client.Dispose();

    /// <summary>The start of a failed attempt's response body, redacted (<see cref="ResponseExcerpt"/>).</summary>
    private static async Task<string?> ReadExcerptAsync(HttpResponseMessage response, string[] headerValues, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength == 0)
        {
            return null;
        }

        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        // One byte more than is kept, to know whether the body was cut off.
        var buffer = ArrayPool<byte>.Shared.Rent(ResponseExcerpt.MaxBytes + 1);
        try
        {
            var read = 0;
            int n;
            while (read <= ResponseExcerpt.MaxBytes && (n = await stream.ReadAsync(buffer.AsMemory(read, ResponseExcerpt.MaxBytes + 1 - read), cancellationToken)) > 0)
            {
                read += n;
            }

            var kept = Math.Min(read, ResponseExcerpt.MaxBytes);
            return ResponseExcerpt.Create(buffer.AsSpan(0, kept), truncated: read > kept, headerValues);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
