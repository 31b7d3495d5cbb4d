using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace TriggerEvents.WebConsole;

/// <summary>
/// The web console's HTTP server: Kestrel on one address, the pages and assets from the binary's
/// resources, the JSON API, sign-in. Used by <c>triggerevents console</c> and, on
/// <c>worker.console_port</c>, inside a worker.
/// </summary>
internal static class ConsoleServer
{
    /// <summary>
    /// The application, not started. <paramref name="configure"/> lets the host add its logging.
    /// Throws <see cref="InvalidOperationException"/> for options that may not be served
    /// (<see cref="ConsoleOptions.Validate"/>).
    /// </summary>
    public static WebApplication Build(ConsoleOptions options, NpgsqlDataSource dataSource, Action<WebApplicationBuilder>? configure)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Validate() is { } refusal)
        {
            throw new InvalidOperationException(refusal);
        }

        var builder = WebApplication.CreateSlimBuilder();
        configure?.Invoke(builder);
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(options.Listen));
        var app = builder.Build();
        var auth = new ConsoleAuth(options);
        var logger = app.Services.GetService(typeof(ILoggerFactory)) is ILoggerFactory factory
            ? factory.CreateLogger("TriggerEvents.WebConsole")
            : null;

        app.Use(async (context, next) =>
        {
            var headers = context.Response.Headers;
            // Everything the pages load comes from this server; nothing may frame them.
            headers.ContentSecurityPolicy = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";
            headers.XContentTypeOptions = "nosniff";
            headers["Referrer-Policy"] = "no-referrer";
            var path = context.Request.Path;
            if (auth.CheckHost(context.Request) is { } misdirected)
            {
                await JsonResponse.ErrorAsync(context, StatusCodes.Status421MisdirectedRequest, misdirected);
                return;
            }

            var open = path.StartsWithSegments("/assets") || path.StartsWithSegments("/signin");
            if (!open && !auth.IsSignedIn(context.Request))
            {
                if (path.StartsWithSegments("/api"))
                {
                    await JsonResponse.ErrorAsync(context, StatusCodes.Status401Unauthorized,
                        "sign in: send Authorization: Bearer <TRIGGER_EVENTS_CONSOLE_TOKEN>, or sign in at /signin");
                }
                else
                {
                    context.Response.Redirect("/signin");
                }

                return;
            }

            try
            {
                await next(context);
            }
            catch (ArgumentException e) when (!context.Response.HasStarted)
            {
                await JsonResponse.ErrorAsync(context, StatusCodes.Status400BadRequest, e.Message);
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException && !context.Response.HasStarted)
            {
                logger?.LogWarning("Console request {Path} failed: {Error}", path.Value, e.Message);
                var message = e is PostgresException pg ? $"{pg.MessageText} ({pg.SqlState})" : e.Message;
                await JsonResponse.ErrorAsync(context, StatusCodes.Status503ServiceUnavailable, $"database: {message}");
            }
        });

        app.MapGet("/", new RequestDelegate(context => ConsoleAssets.WriteAsync(context, "index.html")));
        app.MapGet("/assets/{file}", new RequestDelegate(context => ConsoleAssets.WriteAsync(context, (string)context.Request.RouteValues["file"]!)));
        app.MapGet("/signin", new RequestDelegate(context => auth.Required
            ? ConsoleAssets.WriteAsync(context, "signin.html")
            : Redirect(context, "/")));
        app.MapPost("/signin", new RequestDelegate(async context =>
        {
            if (!auth.Required)
            {
                await Redirect(context, "/");
                return;
            }

            if (ConsoleAuth.CheckCrossSite(context.Request, requireHeader: false) is { } refusal)
            {
                await JsonResponse.ErrorAsync(context, StatusCodes.Status403Forbidden, refusal);
                return;
            }

            var form = context.Request.HasFormContentType ? await context.Request.ReadFormAsync(context.RequestAborted) : null;
            if (form is not null && auth.Matches(form["token"].ToString()))
            {
                auth.SignIn(context.Response);
                await Redirect(context, "/");
                return;
            }

            logger?.LogWarning("Console sign-in refused from {Address}", context.Connection.RemoteIpAddress);
            await Redirect(context, "/signin?failed=1");
        }));
        new ConsoleApi(dataSource, options).Map(app);
        return app;
    }

    /// <summary>The address a browser opens for <paramref name="listen"/> (an unspecified address shown as loopback).</summary>
    public static string BrowserUrl(IPEndPoint listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        var address = listen.Address.Equals(IPAddress.Any) ? IPAddress.Loopback
            : listen.Address.Equals(IPAddress.IPv6Any) ? IPAddress.IPv6Loopback
            : listen.Address;
        return $"http://{new IPEndPoint(address, listen.Port)}/";
    }

    private static Task Redirect(HttpContext context, string location)
    {
        // 303: the browser follows a POST's answer with a GET.
        context.Response.StatusCode = StatusCodes.Status303SeeOther;
        context.Response.Headers.Location = location;
        return Task.CompletedTask;
    }
}
