using System.CommandLine;
using System.Net;
using Microsoft.Extensions.Hosting;
using Serilog;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Cli.Hosting;
using TriggerEvents.WebConsole;

namespace TriggerEvents.Cli.Commands;

/// <summary><c>triggerevents console</c>: the web console (SPEC "Web console").</summary>
internal static class ConsoleCommand
{
    public static Command Create()
    {
        var listen = new Option<string>("--listen")
        {
            Description = "HOST:PORT to serve on (default 127.0.0.1:8081). Any address but loopback needs TRIGGER_EVENTS_CONSOLE_TOKEN.",
            DefaultValueFactory = _ => ConsoleOptions.DefaultListen.ToString(),
        };
        var readOnly = new Option<bool>("--read-only") { Description = "Hide every action (retry, purge, pause, resume, replay); the API refuses them." };
        var command = new Command("console", """
            Serve the web console: subscriptions with state, backlog and rates; deliveries; events with
            every attempt; dead letters; pause, resume, replay; attached triggers. Updates live.
            Binds to loopback by default. On another address it needs TRIGGER_EVENTS_CONSOLE_TOKEN:
            browsers sign in with it once, API clients send 'Authorization: Bearer <token>'.
            TRIGGER_EVENTS_TRACE_URL (with {trace_id} in it) links events to their traces.

            Examples:
              triggerevents console
              triggerevents console --read-only
              TRIGGER_EVENTS_CONSOLE_TOKEN=... triggerevents console --listen 0.0.0.0:8081
            """)
        {
            listen, readOnly,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            IPEndPoint endpoint;
            try
            {
                endpoint = ConsoleOptions.ParseListen(parse.GetValue(listen)!);
            }
            catch (FormatException e)
            {
                throw new UsageException(e.Message);
            }

            var options = ConsoleOptions.FromEnvironment(endpoint, parse.GetValue(readOnly));
            if (options.Validate() is { } refusal)
            {
                throw new UsageException(refusal);
            }

            await using var dataSource = CommandLine.OpenDatabase();
            await WorkerConnection.RequireReadCommittedAsync(dataSource, cancellationToken);
            await using var logger = Logging.Create(parse.GetValue(CommandLine.Verbose));
            return await RunAsync(options, dataSource, logger, cancellationToken);
        }));
        return command;
    }

    /// <summary>Serves the console until <paramref name="cancellationToken"/> or SIGTERM.</summary>
    public static async Task<int> RunAsync(ConsoleOptions options, Npgsql.NpgsqlDataSource dataSource, Serilog.ILogger logger, CancellationToken cancellationToken)
    {
        await using var app = ConsoleServer.Build(options, dataSource, builder => builder.Host.UseSerilog(logger, dispose: false));
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException e) when (e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException)
        {
            throw new IOException($"{options.Listen} is already in use by another process: choose another with --listen", e);
        }

        logger.Information("Console on {Url}{Mode}", ConsoleServer.BrowserUrl(options.Listen), options.ReadOnly ? " (read-only)" : "");
        await app.WaitForShutdownAsync(cancellationToken);
        return ExitCodes.Done;
    }
}
