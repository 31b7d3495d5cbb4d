using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Npgsql;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli.Commands;

/// <summary>The --json summary of <c>backfill</c>.</summary>
internal sealed record BackfillSummary(
    string Trigger, string? Subscription, string? Where, long BackfillId, bool Resumed, bool AlreadyDone,
    long RowsRead, long Events, long TotalRowsRead, long TotalEvents, int Subscriptions);

internal static class BackfillCommand
{
    public static Command Create()
    {
        var trigger = new Option<string>("--trigger", "-t") { Description = "The event trigger whose table is read.", Required = true };
        var where = new Option<string?>("--where") { Description = "Only rows for which this boolean SQL expression over the table's columns is true." };
        var subscription = new Option<string?>("--subscription", "-s") { Description = "Only this subscription receives the events (default: the trigger's subscriptions that receive READ)." };
        var rate = new Option<string?>("--rate") { Description = "At most this many rows read per second, as 500/s (default: as fast as the database goes)." };
        var chunkSize = new Option<int?>("--chunk-size") { Description = $"Rows per chunk, each chunk one transaction (default {Backfill.DefaultChunkRows})." };
        var restart = new Option<bool>("--restart") { Description = "Start over from the first row, even if the same backfill finished or is part done." };
        var json = CommonOptions.Json();
        var command = new Command("backfill", """
            Write one READ event per existing row of a trigger's table ("old" null, "new" the row as
            it is, with the trigger's payload columns and condition), for the trigger's
            subscriptions whose operations include READ, or for one subscription. Rows are read in
            primary-key order, a chunk per short transaction; nothing is locked beyond reading rows.
            Interrupted, the same command again continues after the last chunk done; run again
            after it finished, it says so and does nothing (--restart starts over).

            Examples:
              triggerevents backfill --trigger orders_changed
              triggerevents backfill --trigger orders_changed --subscription billing-orders --where "status = 'paid'" --rate 500/s
            """)
        {
            trigger, where, subscription, rate, chunkSize, restart, json,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            var rowsPerSecond = ParseRate(parse.GetValue(rate));
            var chunkRows = parse.GetValue(chunkSize) ?? Backfill.DefaultChunkRows;
            if (chunkRows is < 1 or > Backfill.MaxChunkRows)
            {
                throw new UsageException(string.Create(CultureInfo.InvariantCulture, $"--chunk-size: give a number of rows from 1 to {Backfill.MaxChunkRows:N0}"));
            }

            var triggerName = parse.GetValue(trigger)!;
            var subscriptionName = parse.GetValue(subscription);
            var filter = parse.GetValue(where);
            if (filter is not null && string.IsNullOrWhiteSpace(filter))
            {
                throw new UsageException("--where is empty: give a boolean SQL expression, or leave it out to read every row");
            }

            var asJson = parse.GetValue(json);
            await using var dataSource = CommandLine.OpenDatabase();
            await CommandLine.RequireTriggerAsync(dataSource, triggerName, cancellationToken);
            await CommandLine.RequireSubscriptionAsync(dataSource, subscriptionName, cancellationToken);
            BackfillStart start;
            try
            {
                start = await Backfill.StartAsync(dataSource, triggerName, filter, subscriptionName, parse.GetValue(restart), cancellationToken);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.RaiseException)
            {
                // backfill_start refuses bad arguments this way (no primary key, a filter that is
                // not one boolean expression, a subscription that does not receive READ): the
                // user's input, exit 2, nothing recorded.
                var message = e.Hint is { Length: > 0 } hint ? $"{e.MessageText}. {hint}" : e.MessageText;
                throw new UsageException(message.ReplaceLineEndings(" "));
            }

            var receivers = subscriptionName ?? $"{start.Subscriptions} subscription{(start.Subscriptions == 1 ? "" : "s")} receiving READ";
            if (start.AlreadyDone)
            {
                Write(asJson, new BackfillSummary(triggerName, subscriptionName, filter, start.Id, false, true, 0, 0, start.RowsRead, start.Events, start.Subscriptions),
                    string.Create(CultureInfo.InvariantCulture, $"The same backfill of {triggerName} finished at {start.FinishedAt:u}: {start.RowsRead:N0} rows read, {start.Events:N0} READ events. Nothing to do; --restart starts it over."));
                return ExitCodes.Done;
            }

            if (start.Resumed && !asJson)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Resuming the backfill of {triggerName} after {start.RowsRead:N0} rows read."));
            }

            // Ctrl-C and SIGTERM cancel the chunk running (it rolls back whole) and say how to
            // continue, instead of ending the process without a word.
            using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            void Interrupt(PosixSignalContext context)
            {
                context.Cancel = true;
                interrupt.Cancel();
            }

            using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Interrupt);
            using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Interrupt);
            var rowsDone = start.RowsRead;
            BackfillResult result;
            try
            {
                using var progress = asJson ? null : new ProgressLine("backfilling", start.EstimatedRows is > 0 and var estimate ? Math.Max(estimate, start.RowsRead) : null);
                result = await Backfill.RunAsync(
                    dataSource, start, chunkRows, rowsPerSecond, TimeProvider.System,
                    new ProgressRelay(rows => { rowsDone = rows; progress?.Report(rows); }), interrupt.Token);
            }
            catch (OperationCanceledException)
            {
                await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"triggerevents: backfill of {triggerName} interrupted after {rowsDone:N0} rows read; the same command continues where it stopped"));
                return ExitCodes.Failed;
            }

            Write(asJson, new BackfillSummary(triggerName, subscriptionName, filter, start.Id, start.Resumed, false, result.RowsRead, result.Events, result.TotalRowsRead, result.TotalEvents, start.Subscriptions),
                string.Create(CultureInfo.InvariantCulture, $"Backfill of {triggerName} done: {result.TotalRowsRead:N0} rows read, {result.TotalEvents:N0} READ events for {receivers}")
                + (start.Resumed ? string.Create(CultureInfo.InvariantCulture, $" ({result.RowsRead:N0} rows in this run).") : "."));
            return ExitCodes.Done;
        }));
        return command;
    }

    /// <summary>Rows per second from "500/s" (or a bare "500"); null when not given.</summary>
    internal static int? ParseRate(string? text)
    {
        if (text is null)
        {
            return null;
        }

        var number = text.Trim();
        if (number.EndsWith("/s", StringComparison.OrdinalIgnoreCase))
        {
            number = number[..^2].TrimEnd();
        }

        return int.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out var rate) && rate >= 1
            ? rate
            : throw new UsageException($"--rate: '{text}' is not a rate: give rows per second as a whole number, as 500/s");
    }

    /// <summary>Hears progress synchronously (<see cref="Progress{T}"/> would post it to the thread pool).</summary>
    private sealed class ProgressRelay(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }

    private static void Write(bool asJson, BackfillSummary summary, string line) =>
        Console.WriteLine(asJson ? JsonSerializer.Serialize(summary, JsonOutput.Default.BackfillSummary) : line);
}
