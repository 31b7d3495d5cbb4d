using System.CommandLine;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Prometheus;
using Serilog;
using TriggerEvents.Cli.Hosting;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Postgres.Migrations;
using TriggerEvents.WebConsole;
using TriggerEvents.Worker.Delivery;
using TriggerEvents.Worker.Hosting;

namespace TriggerEvents.Cli.Commands;

/// <summary><c>triggerevents run</c>: the worker, with /healthz, /readyz and /metrics.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var config = CommonOptions.Config();
        var command = new Command("run", """
            Run the worker: claim due deliveries, post them to their webhooks, retry and dead-letter.
            Several replicas may run against one database. SIGTERM stops it cleanly.

            Examples:
              TRIGGER_EVENTS_DATABASE_URL=postgres://app@db/app triggerevents run --config triggerevents.yaml
            """)
        {
            config,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            var loaded = CommonOptions.LoadConfig(parse.GetValue(config));
            await using var dataSource = CommandLine.OpenDatabase(WorkerConnection.Tune);
            await using var logger = Logging.Create(parse.GetValue(CommandLine.Verbose));
            return await RunAsync(loaded, dataSource, logger, cancellationToken);
        }));
        return command;
    }

    /// <summary>Runs the worker host until <paramref name="cancellationToken"/> or SIGTERM; returns the exit code.</summary>
    public static async Task<int> RunAsync(
        TriggerEventsConfig config, NpgsqlDataSource dataSource, Serilog.ILogger logger, CancellationToken cancellationToken, string listenAddress = "0.0.0.0")
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Host.UseSerilog(logger, dispose: false);
        builder.WebHost.UseUrls($"http://{listenAddress}:{config.Worker.HttpPort}");
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = config.Worker.ShutdownTimeout + TimeSpan.FromSeconds(5));
        var registry = Metrics.NewCustomRegistry();
        builder.Services.AddSingleton(config);
        builder.Services.AddSingleton(dataSource);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton(new WorkerMetrics(registry, config.Worker.MetricsInterval));
        builder.Services.AddSingleton<WorkerHealth>();
        builder.Services.AddSingleton<WorkerService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<WorkerService>());
        if (Tracing.Read(builder.Configuration) is { } tracing)
        {
            // Scheme, host and port only: a URL may carry credentials (the headers are never logged).
            logger.Information("Tracing deliveries to {Collector} over OTLP {Protocol}", $"{tracing.Endpoint.Scheme}://{tracing.Endpoint.Authority}", tracing.Protocol);
            Tracing.Add(builder.Services, builder.Configuration, tracing);
        }

        await using var app = builder.Build();
        var health = app.Services.GetRequiredService<WorkerHealth>();
        app.MapGet("/healthz", () => health.IsAlive
            ? Results.Text("ok\n")
            : Results.Text(health.Started ? "claim loop stalled\n" : "starting\n", statusCode: StatusCodes.Status503ServiceUnavailable));
        app.MapGet("/readyz", async (CancellationToken requestAborted) =>
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            try
            {
                var version = await Migrator.GetVersionAsync(dataSource, timeout.Token);
                if (version.Database < version.Binary)
                {
                    return Results.Text($"schema version {version.Database}, need {version.Binary}\n", statusCode: StatusCodes.Status503ServiceUnavailable);
                }

                if (!health.Started)
                {
                    return Results.Text("starting\n", statusCode: StatusCodes.Status503ServiceUnavailable);
                }

                // A newer schema is a rollout in progress: migrate ran before or beside it, and a
                // running worker of the release before keeps delivering (a migration that does not
                // keep it working, migrations.workers_from, refuses it only at its next start).
                // Not ready, the whole old fleet would count as down and a disruption budget would
                // block every drain meanwhile.
                return version.Database > version.Binary
                    ? Results.Text($"ready (schema version {version.Database} is newer than this worker's {version.Binary}: replace it with the new release)\n")
                    : Results.Text("ready\n");
            }
            catch (Exception e) when (e is NpgsqlException or OperationCanceledException or TimeoutException)
            {
                return Results.Text("database unreachable\n", statusCode: StatusCodes.Status503ServiceUnavailable);
            }
        });
        app.MapMetrics("/metrics", registry);

        var worker = app.Services.GetRequiredService<WorkerService>();
        // worker.console_port: the web console in this process, on loopback only (SPEC "Web console");
        // with TRIGGER_EVENTS_CONSOLE_TOKEN set it asks for it there too.
        await using var console = config.Worker.ConsolePort == 0 ? null : ConsoleServer.Build(
            ConsoleOptions.FromEnvironment(new IPEndPoint(IPAddress.Loopback, config.Worker.ConsolePort), readOnly: false),
            dataSource,
            consoleBuilder => consoleBuilder.Host.UseSerilog(logger, dispose: false));
        try
        {
            if (console is not null)
            {
                await console.StartAsync(cancellationToken);
            }

            await app.RunAsync(cancellationToken);
        }
        catch (IOException e) when (e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException)
        {
            var port = console is not null && e.Message.Contains($":{config.Worker.ConsolePort}", StringComparison.Ordinal)
                ? $"worker.console_port {config.Worker.ConsolePort}"
                : $"worker.http_port {config.Worker.HttpPort}";
            throw new IOException($"{port} of {config.SourcePath} is already in use by another process ({e.Message})", e);
        }
        finally
        {
            if (console is not null)
            {
                await console.StopAsync(CancellationToken.None);
            }
        }

        // A file that names another group's subscription is a configuration error, found only once
        // the database is asked: exit 2, like every other one.
        return worker.Failure switch
        {
            null => ExitCodes.Done,
            ConfigException => ExitCodes.BadUsage,
            _ => ExitCodes.Failed,
        };
    }
}
