using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.WebConsole;

/// <summary>
/// The console's JSON API under <c>/api/</c>, which its pages poll. Reads are GETs; actions are
/// POSTs (refused with 403 when read-only) that run the same operations as the command line:
/// <see cref="DeadLetters"/>, <see cref="SubscriptionAdmin"/>, <see cref="Replay"/>.
/// </summary>
internal sealed class ConsoleApi(NpgsqlDataSource dataSource, ConsoleOptions options)
{
    private static readonly TimeSpan RateWindow = ConsoleQueries.RateWindow;

    /// <summary>Most dead letters one listing shows (the count says how many there are).</summary>
    public const int DeadListLimit = 200;

    /// <summary>
    /// How long one reading of the overview serves every page that asks. Its counts walk the
    /// pending deliveries of every subscription (46 ms at 20,000 pending): read once per page
    /// refresh for all the pages open, not once per page, they cost a drain what one open page
    /// does (bench/README.md, console cost). A reading is reused only while no action has
    /// started or ended since it began, so an action's effect shows at once.
    /// </summary>
    private static readonly TimeSpan OverviewReuse = TimeSpan.FromSeconds(1.5);

    private readonly SemaphoreSlim overviewReading = new(1, 1);
    private Overview? lastOverview;

    // Counts the starts and ends of actions: each reading notes the count it began at, and is
    // reused only while the count is still that, so no page shows the state before an action
    // after the action answered.
    private long actions;

    private sealed record Overview(long ReadAt, long Actions, IReadOnlyList<SubscriptionStatus> Statuses, Dictionary<string, SubscriptionRate> Rates);

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/api/config", new RequestDelegate(ConfigAsync));
        app.MapGet("/api/overview", new RequestDelegate(OverviewAsync));
        app.MapGet("/api/subscriptions/{name}/deliveries", new RequestDelegate(DeliveriesAsync));
        app.MapGet("/api/events/{id}", new RequestDelegate(EventAsync));
        app.MapGet("/api/dead", new RequestDelegate(DeadAsync));
        app.MapGet("/api/triggers", new RequestDelegate(TriggersAsync));
        app.MapPost("/api/subscriptions/{name}/pause", Action(PauseAsync));
        app.MapPost("/api/subscriptions/{name}/resume", Action(ResumeAsync));
        app.MapPost("/api/subscriptions/{name}/replay", Action(ReplayAsync));
        app.MapPost("/api/dead/retry", Action(RetryAsync));
        app.MapPost("/api/dead/purge", Action(PurgeAsync));
    }

    private Task ConfigAsync(HttpContext context) =>
        JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("read_only", options.ReadOnly);
            w.WriteBoolean("sign_in", options.Token is not null);
            w.WriteBoolean("trace_links", options.TraceUrlTemplate is not null);
            w.WriteNumber("rate_window_minutes", RateWindow.TotalMinutes);
            w.WriteEndObject();
        });

    private async Task<Overview> ReadOverviewAsync(CancellationToken cancellationToken)
    {
        await overviewReading.WaitAsync(cancellationToken);
        try
        {
            var actionsNow = Interlocked.Read(ref actions);
            if (lastOverview is { } last && last.Actions == actionsNow && System.Diagnostics.Stopwatch.GetElapsedTime(last.ReadAt) < OverviewReuse)
            {
                return last;
            }

            var statuses = await StatusQueries.GetSubscriptionStatusAsync(dataSource, cancellationToken);
            var rates = (await ConsoleQueries.RatesAsync(dataSource, RateWindow, cancellationToken)).ToDictionary(r => r.Subscription);
            lastOverview = new Overview(System.Diagnostics.Stopwatch.GetTimestamp(), actionsNow, statuses, rates);
            return lastOverview;
        }
        finally
        {
            overviewReading.Release();
        }
    }

    private async Task OverviewAsync(HttpContext context)
    {
        var (_, _, statuses, rates) = await ReadOverviewAsync(context.RequestAborted);
        await JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("read_only", options.ReadOnly);
            w.WriteNumber("rate_window_minutes", RateWindow.TotalMinutes);
            w.WriteStartArray("subscriptions");
            foreach (var s in statuses)
            {
                rates.TryGetValue(s.Subscription, out var rate);
                w.WriteStartObject();
                w.WriteString("name", s.Subscription);
                w.WriteString("group", s.Group);
                w.WriteString("trigger", s.TriggerName);
                w.WriteString("state", s.State);
                w.Nullable("paused_by", s.PausedBy);
                w.Nullable("paused_reason", s.PausedReason);
                w.Time("paused_at", s.PausedAt);
                w.WriteString("circuit", s.Circuit);
                w.WriteNumber("pending", s.Pending);
                w.WriteNumber("retrying", s.Retrying);
                w.WriteNumber("in_flight", s.InFlight);
                w.WriteNumber("dead", s.Dead);
                w.Nullable("oldest_pending_age_seconds", s.OldestPendingAgeSeconds);
                w.WriteNumber("delivered_per_minute", Math.Round(rate?.DeliveredPerMinute ?? 0, 2));
                w.WriteNumber("attempts_per_minute", Math.Round(rate?.AttemptsPerMinute ?? 0, 2));
                w.Nullable("failure_rate", rate?.FailureRate);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    private async Task DeliveriesAsync(HttpContext context)
    {
        var query = context.Request.Query;
        var name = (string)context.Request.RouteValues["name"]!;
        var status = NullIfEmpty(query["status"]);
        if (status == "all")
        {
            status = null;
        }

        var page = new DeliveryPage(
            name, status, OptionalLong(query["before"], "before"), OptionalLong(query["event_id"], "event_id"),
            OptionalTime(query["since"], "since"), OptionalTime(query["until"], "until"),
            (int)(OptionalLong(query["limit"], "limit") ?? 50));
        var rows = await ConsoleQueries.DeliveriesAsync(dataSource, page, context.RequestAborted);
        if (rows is null)
        {
            await JsonResponse.ErrorAsync(context, StatusCodes.Status404NotFound, $"no subscription named '{name}'");
            return;
        }

        await JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteString("subscription", name);
            w.WriteStartArray("deliveries");
            foreach (var d in rows)
            {
                w.WriteStartObject();
                w.WriteNumber("event_id", d.EventId);
                w.WriteString("status", d.Status);
                w.WriteNumber("attempts", d.Attempts);
                w.Nullable("last_status", d.LastStatus);
                w.Nullable("last_error", d.LastError);
                w.Time("next_attempt_at", ParkedAsNull(d.NextAttemptAt));
                w.Time("delivered_at", d.DeliveredAt);
                w.Time("updated_at", d.UpdatedAt);
                w.Time("captured_at", d.CapturedAt);
                w.WriteString("op", d.Operation);
                w.WriteString("table", $"{d.SchemaName}.{d.TableName}");
                w.Nullable("webhook_id", d.WebhookId.For(d.EventId, name));
                w.WriteEndObject();
            }

            w.WriteEndArray();
            // The keyset of the next page: a full page may have more behind it.
            if (rows.Count == Math.Clamp(page.Limit, 1, ConsoleQueries.MaxPage))
            {
                w.WriteNumber("next_before", rows[^1].EventId);
            }
            else
            {
                w.WriteNull("next_before");
            }

            w.WriteEndObject();
        });
    }

    private async Task EventAsync(HttpContext context)
    {
        var id = OptionalLong((string?)context.Request.RouteValues["id"], "id")!.Value;
        var detail = await ConsoleQueries.EventAsync(dataSource, id, context.RequestAborted);
        if (detail is null)
        {
            await JsonResponse.ErrorAsync(context, StatusCodes.Status404NotFound, $"no event {id} in the log (never captured, or removed by retention)");
            return;
        }

        var deliveries = await ConsoleQueries.EventDeliveriesAsync(dataSource, id, context.RequestAborted);
        var attempts = await ConsoleQueries.EventAttemptsAsync(dataSource, id, context.RequestAborted);
        var traceId = TraceParent.TryParse(detail.TraceParent, out var trace) ? trace.TraceId.ToString() : null;
        await JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("id", detail.Id);
            w.WriteString("trigger", detail.Trigger);
            w.WriteString("table", $"{detail.SchemaName}.{detail.TableName}");
            w.WriteString("op", detail.Operation);
            w.Time("captured_at", detail.CapturedAt);
            w.WriteString("captured_by", detail.CapturedBy);
            w.Nullable("condition_error", detail.ConditionError);
            w.Nullable("for_subscription", detail.ForSubscription);
            w.Raw("old", detail.OldData);
            w.Raw("new", detail.NewData);
            w.Raw("session_variables", detail.SessionVariables);
            w.Nullable("traceparent", detail.TraceParent);
            w.Nullable("trace_id", traceId);
            w.Nullable("trace_url", traceId is null || options.TraceUrlTemplate is null
                ? null
                : options.TraceUrlTemplate.Replace("{trace_id}", traceId, StringComparison.Ordinal));
            w.WriteStartArray("deliveries");
            foreach (var d in deliveries)
            {
                w.WriteStartObject();
                w.WriteString("subscription", d.Subscription);
                w.WriteString("status", d.Status);
                w.WriteNumber("attempts", d.Attempts);
                w.Nullable("last_status", d.LastStatus);
                w.Nullable("last_error", d.LastError);
                w.Time("next_attempt_at", ParkedAsNull(d.NextAttemptAt));
                w.Time("delivered_at", d.DeliveredAt);
                w.Nullable("webhook_id", d.WebhookId.For(id, d.Subscription));
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartArray("attempts");
            foreach (var a in attempts)
            {
                w.WriteStartObject();
                w.WriteString("subscription", a.Subscription);
                w.WriteNumber("attempt", a.Attempt);
                w.Time("started_at", a.StartedAt);
                w.WriteNumber("duration_ms", Math.Round(a.DurationMs, 1));
                w.Nullable("http_status", a.HttpStatus);
                w.Nullable("error", a.Error);
                w.Nullable("response_excerpt", a.ResponseExcerpt);
                w.WriteString("webhook_id", a.BatchWebhookId ?? WebhookId.For(id, a.Subscription));
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    private async Task DeadAsync(HttpContext context)
    {
        var filter = new DeliveryFilter(NullIfEmpty(context.Request.Query["subscription"]), OptionalLong(context.Request.Query["event_id"], "event_id"));
        var rows = await DeadLetters.ListAsync(dataSource, filter, DeadListLimit, context.RequestAborted);
        var count = rows.Count < DeadListLimit ? rows.Count : await DeadLetters.CountAsync(dataSource, filter, context.RequestAborted);
        await JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("count", count);
            w.WriteStartArray("dead");
            foreach (var d in rows)
            {
                w.WriteStartObject();
                w.WriteString("subscription", d.Subscription);
                w.WriteNumber("event_id", d.EventId);
                w.WriteString("trigger", d.TriggerName);
                w.WriteString("op", d.Operation);
                w.Time("captured_at", d.CapturedAt);
                w.WriteNumber("attempts", d.Attempts);
                w.Nullable("last_status", d.LastStatus);
                w.Nullable("last_error", d.LastError);
                w.Time("died_at", d.DiedAt);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    private async Task TriggersAsync(HttpContext context)
    {
        var triggers = await EventTriggerAdmin.ListAsync(dataSource, context.RequestAborted);
        await JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartArray();
            foreach (var t in triggers)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.Nullable("table", t.TableName is null ? null : $"{t.TableSchema}.{t.TableName}");
                w.WriteString("operations", string.Join(", ", t.Operations));
                w.Nullable("update_columns", t.UpdateColumns is null ? null : string.Join(", ", t.UpdateColumns));
                w.Nullable("payload_columns", t.PayloadColumns is null ? null : string.Join(", ", t.PayloadColumns));
                w.Nullable("condition", t.Condition);
                w.WriteBoolean("notify", t.Notify);
                w.WriteString("health", t.Health);
                w.WriteNumber("template_version", t.TemplateVersion);
                w.WriteNumber("condition_errors", t.ConditionErrors);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        });
    }

    private async Task PauseAsync(HttpContext context, JsonElement body)
    {
        var name = (string)context.Request.RouteValues["name"]!;
        var reason = OptionalString(body, "reason");
        if (!await SubscriptionAdmin.PauseAsync(dataSource, name, reason ?? "paused from the console", context.RequestAborted))
        {
            await JsonResponse.ErrorAsync(context, StatusCodes.Status404NotFound, $"no subscription named '{name}'");
            return;
        }

        await Done(context, "paused");
    }

    private async Task ResumeAsync(HttpContext context, JsonElement body)
    {
        var name = (string)context.Request.RouteValues["name"]!;
        switch (await SubscriptionAdmin.ResumeAsync(dataSource, name, context.RequestAborted))
        {
            case ResumeResult.NoSuchSubscription:
                await JsonResponse.ErrorAsync(context, StatusCodes.Status404NotFound, $"no subscription named '{name}'");
                return;
            case ResumeResult.NotInItsFile:
                await JsonResponse.ErrorAsync(context, StatusCodes.Status409Conflict,
                    $"{name} is paused because it is not in its group's file, so no worker would serve it: add it back to the file and restart that group's workers");
                return;
            case ResumeResult.AlreadyActive:
                await Done(context, "already active");
                return;
            default:
                await Done(context, "resumed");
                return;
        }
    }

    private async Task ReplayAsync(HttpContext context, JsonElement body)
    {
        var name = (string)context.Request.RouteValues["name"]!;
        var since = OptionalTime(OptionalString(body, "since"), "since") ?? throw new ArgumentException("a replay needs 'since'");
        var until = OptionalTime(OptionalString(body, "until"), "until");
        if (until <= since)
        {
            throw new ArgumentException("'until' must be after 'since'");
        }

        if (!await Names.SubscriptionExistsAsync(dataSource, name, context.RequestAborted))
        {
            await JsonResponse.ErrorAsync(context, StatusCodes.Status404NotFound, $"no subscription named '{name}'");
            return;
        }

        var result = await Replay.RunAsync(dataSource, name, null, since, until, null, null, context.RequestAborted);
        await JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("events", result.Events);
            w.WriteNumber("scheduled", result.Scheduled);
            w.WriteEndObject();
        });
    }

    private async Task RetryAsync(HttpContext context, JsonElement body)
    {
        var retried = await DeadLetters.RetryAsync(dataSource, DeadFilter(body), null, context.RequestAborted);
        await JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("retried", retried);
            w.WriteEndObject();
        });
    }

    private async Task PurgeAsync(HttpContext context, JsonElement body)
    {
        // As `dead purge` asks on a terminal: deleting dead letters is not undone.
        if (!(body.ValueKind == JsonValueKind.Object && body.TryGetProperty("confirm", out var confirm) && confirm.ValueKind == JsonValueKind.True))
        {
            throw new ArgumentException("purging deletes dead letters for good: send \"confirm\": true");
        }

        var purged = await DeadLetters.PurgeAsync(dataSource, DeadFilter(body), null, context.RequestAborted);
        await JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("purged", purged);
            w.WriteEndObject();
        });
    }

    private static DeliveryFilter DeadFilter(JsonElement body)
    {
        long? eventId = null;
        if (body.ValueKind == JsonValueKind.Object && body.TryGetProperty("event_id", out var id) && id.ValueKind != JsonValueKind.Null)
        {
            eventId = id.ValueKind == JsonValueKind.Number && id.TryGetInt64(out var value)
                ? value
                : throw new ArgumentException("'event_id' must be a whole number");
        }

        return new DeliveryFilter(OptionalString(body, "subscription"), eventId);
    }

    /// <summary>
    /// An action: refused when read-only (403) and without the cross-site protections (403);
    /// the body, when there is one, must be a JSON object.
    /// </summary>
    private RequestDelegate Action(Func<HttpContext, JsonElement, Task> handler) => async context =>
    {
        if (options.ReadOnly)
        {
            await JsonResponse.ErrorAsync(context, StatusCodes.Status403Forbidden, "the console is read-only");
            return;
        }

        if (ConsoleAuth.CheckCrossSite(context.Request, requireHeader: true) is { } refusal)
        {
            await JsonResponse.ErrorAsync(context, StatusCodes.Status403Forbidden, refusal);
            return;
        }

        JsonElement body = default;
        if (context.Request.ContentLength is > 0 || context.Request.Headers.TransferEncoding.Count > 0)
        {
            try
            {
                using var document = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
                body = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new ArgumentException($"the request body is not JSON: {e.Message}", e);
            }

            if (body.ValueKind != JsonValueKind.Object)
            {
                throw new ArgumentException("the request body must be a JSON object");
            }
        }

        Interlocked.Increment(ref actions);
        try
        {
            await handler(context, body);
        }
        finally
        {
            Interlocked.Increment(ref actions);
        }
    };

    private static Task Done(HttpContext context, string result) =>
        JsonResponse.WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteString("result", result);
            w.WriteEndObject();
        });

    private static string? OptionalString(JsonElement body, string name) =>
        body.ValueKind == JsonValueKind.Object && body.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null
            ? value.ValueKind == JsonValueKind.String ? NullIfEmpty(value.GetString()) : throw new ArgumentException($"'{name}' must be a string")
            : null;

    private static long? OptionalLong(string? value, string name) =>
        NullIfEmpty(value) is not { } text ? null
        : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) ? parsed
        : throw new ArgumentException($"'{name}' must be a whole number, not '{text}'");

    private static DateTimeOffset? OptionalTime(string? value, string name) =>
        NullIfEmpty(value) is not { } text ? null
        : PointInTime.TryParse(text, DateTimeOffset.UtcNow, out var parsed) ? parsed
        : throw new ArgumentException($"'{name}' must be {PointInTime.Expected}, not '{text}'");

    private static string? NullIfEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    /// <summary>
    /// A parked delivery (migration 000016: waiting for the one before it in its key) is due at
    /// 'infinity', which reads as <see cref="DateTime.MaxValue"/>: it has no time yet.
    /// </summary>
    private static DateTime? ParkedAsNull(DateTime dueAt) => dueAt == DateTime.MaxValue ? null : dueAt;
}
