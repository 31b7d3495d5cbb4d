using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Reflection;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery.Targets;

/// <summary>
/// Posts events to one subscription's webhook (the HTTP <see cref="IDeliveryTarget"/>): one pooled connection handler per target,
/// redirects not followed, the subscription's timeout per request, Standard Webhooks
/// signatures computed at send time. With <c>worker.deny_private_networks</c>, connections go
/// through <see cref="PrivateNetworkGuard"/>. Answers become outcomes by <see cref="WebhookOutcome"/>.
/// </summary>
internal sealed class WebhookTarget : IDeliveryTarget
{
    public static readonly string UserAgent =
        "triggerevents/" + (typeof(WebhookTarget).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0");

    private readonly SubscriptionConfig subscription;
    private readonly HttpClient client;
    private readonly WebhookSigner? signer;
    private readonly TimeProvider time;
    private readonly string[] headerValues;

    public WebhookTarget(SubscriptionConfig subscription, int maxConnections, TimeProvider time, bool denyPrivateNetworks = false)
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

    public Uri Destination => subscription.Webhook.Url;

    /// <summary>POSTs the message's body, signed, under its id (<see cref="WebhookId"/>).</summary>
    public async Task<AttemptOutcome> SendAsync(TargetMessage message, CancellationToken cancellationToken)
    {
        var (messageId, body, delivery, span) = (message.Id, message.Body, message.First, message.Span);
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
            TimeSpan? retryAfter = null;
            if (response.Headers.TryGetValues("Retry-After", out var values) &&
                RetryAfter.TryParse(values.FirstOrDefault(), time.GetUtcNow(), out var delay))
            {
                retryAfter = delay;
            }

            var outcome = WebhookOutcome.Response((int)response.StatusCode, retryAfter);
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

            return new AttemptOutcome(outcome, excerpt, startedAt, time.GetElapsedTime(started));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new AttemptOutcome(WebhookOutcome.Timeout(subscription.Webhook.Timeout), null, startedAt, time.GetElapsedTime(started));
        }
        catch (Exception e) when (e is HttpRequestException or IOException && PrivateNetworkGuard.RefusalIn(e) is { } refused)
        {
            return new AttemptOutcome(WebhookOutcome.Refused(refused.Message), null, startedAt, time.GetElapsedTime(started));
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            // The message names the host and the failure, never a header value.
            return new AttemptOutcome(WebhookOutcome.ConnectionError(e.Message), null, startedAt, time.GetElapsedTime(started));
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
