using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli.Commands;

/// <summary><c>attach</c>, <c>detach</c>, <c>triggers</c> and <c>invoke</c>: the SQL API from a shell.</summary>
internal static class TriggerCommands
{
    public static Command Attach()
    {
        var table = new Argument<string>("TABLE") { Description = "The table, as in SQL: orders, sales.orders, \"Order Items\"." };
        var trigger = new Option<string>("--trigger", "-t") { Description = "The event trigger's name.", Required = true };
        var ops = new Option<string[]>("--ops") { Description = "Operations to capture (default INSERT UPDATE DELETE).", AllowMultipleArgumentsPerToken = true };
        var updateColumns = new Option<string[]>("--update-columns") { Description = "An UPDATE is an event only if one of these changed.", AllowMultipleArgumentsPerToken = true };
        var payloadColumns = new Option<string[]>("--payload-columns") { Description = "Only these columns appear in old/new.", AllowMultipleArgumentsPerToken = true };
        var when = new Option<string?>("--when") { Description = "A boolean SQL expression over OLD and NEW." };
        var noNotify = new Option<bool>("--no-notify") { Description = "Do not send the NOTIFY wake-up hint (workers then rely on polling)." };
        var lockTimeout = LockTimeout();
        var command = new Command("attach", """
            Create or replace an event trigger on a table. Idempotent: the same call again changes nothing,
            unless the trigger is not healthy (see 'triggerevents triggers'): then it repairs it.

            Examples:
              triggerevents attach orders --trigger orders_changed
              triggerevents attach orders --trigger orders_paid --ops UPDATE --update-columns status --when "NEW.status = 'paid'"
            """)
        {
            table, trigger, ops, updateColumns, payloadColumns, when, noNotify, lockTimeout,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            await using var dataSource = CommandLine.OpenDatabase();
            string result;
            try
            {
                result = await EventTriggerAdmin.AttachAsync(
                    dataSource, parse.GetValue(table)!, parse.GetValue(trigger)!, Split(parse.GetValue(ops)),
                    Split(parse.GetValue(updateColumns)), Split(parse.GetValue(payloadColumns)), parse.GetValue(when),
                    !parse.GetValue(noNotify), ParseLockTimeout(parse.GetValue(lockTimeout)), cancellationToken);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable && !DatabaseProblems.IsSchemaMissing(e))
            {
                throw CommandLine.NoSuch("table", parse.GetValue(table)!);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.RaiseException)
            {
                // trigger_events.attach refuses bad arguments (an unknown column, an unknown
                // operation, a name used on another table) this way: the user's input, exit 2.
                throw new UsageException(e.MessageText);
            }

            Console.WriteLine($"{parse.GetValue(trigger)}: {result}");
            return ExitCodes.Done;
        }));
        return command;
    }

    public static Command Detach()
    {
        var name = new Argument<string>("NAME") { Description = "The event trigger's name." };
        var lockTimeout = LockTimeout();
        var command = new Command("detach", """
            Remove an event trigger. Events it captured stay and are delivered. Dropping its triggers
            takes an ACCESS EXCLUSIVE lock on the table, waited for at most --lock-timeout.

            Examples:
              triggerevents detach orders_changed
            """)
        {
            name, lockTimeout,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            await using var dataSource = CommandLine.OpenDatabase();
            // A busy table fails with the database's message (exit 1), as every command does.
            var lockWait = ParseLockTimeout(parse.GetValue(lockTimeout));
            if (!await EventTriggerAdmin.DetachAsync(dataSource, parse.GetValue(name)!, lockWait, cancellationToken))
            {
                throw CommandLine.NoSuch("event trigger", parse.GetValue(name)!, "see 'triggerevents triggers'");
            }

            Console.WriteLine($"{parse.GetValue(name)}: detached");
            return ExitCodes.Done;
        }));
        return command;
    }

    public static Command List()
    {
        var json = CommonOptions.Json();
        var command = new Command("triggers", """
            List the attached event triggers.

            Examples:
              triggerevents triggers
              triggerevents triggers --json
            """)
        {
            json,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            await using var dataSource = CommandLine.OpenDatabase();
            var triggers = await EventTriggerAdmin.ListAsync(dataSource, cancellationToken);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(triggers, JsonOutput.Default.IReadOnlyListAttachedTrigger));
                return ExitCodes.Done;
            }

            TextTable.Write(
                ["TRIGGER", "TABLE", "HEALTH", "OPERATIONS", "UPDATE COLUMNS", "PAYLOAD COLUMNS", "CONDITION", "CONDITION ERRORS", "NOTIFY"],
                triggers.Select(t => new[]
                {
                    t.Name, t.TableExists ? $"{t.TableSchema}.{t.TableName}" : "(dropped)", t.Health, string.Join(',', t.Operations),
                    t.UpdateColumns is null ? "any" : string.Join(',', t.UpdateColumns),
                    t.PayloadColumns is null ? "all" : string.Join(',', t.PayloadColumns),
                    t.Condition ?? "", t.Condition is null ? "" : t.ConditionErrors.ToString(CultureInfo.InvariantCulture),
                    t.Notify ? "yes" : "no",
                }));
            var unhealthy = triggers.Where(t => t.Health != "ok").Select(t => t.Name).ToList();
            if (unhealthy.Count > 0)
            {
                Console.Error.WriteLine(
                    $"not healthy: {string.Join(", ", unhealthy)}; 'triggerevents attach' with the same arguments repairs a trigger "
                    + "whose table still exists (sql/README.md, \"Health and upgrades\")");
            }

            return ExitCodes.Done;
        }));
        return command;
    }

    public static Command Invoke()
    {
        var trigger = new Option<string>("--trigger", "-t") { Description = "The event trigger's name.", Required = true };
        var payload = new Option<string>("--payload") { Description = "A JSON value: the event's new data.", Required = true };
        var command = new Command("invoke", """
            Capture a MANUAL event for a trigger's subscriptions.

            Examples:
              triggerevents invoke --trigger orders_changed --payload '{"id": 7, "reason": "resend"}'
            """)
        {
            trigger, payload,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            var json = parse.GetValue(payload)!;
            try
            {
                using var _ = JsonDocument.Parse(json);
            }
            catch (JsonException e)
            {
                throw new UsageException($"--payload is not JSON: {e.Message}");
            }

            await using var dataSource = CommandLine.OpenDatabase();
            await CommandLine.RequireTriggerAsync(dataSource, parse.GetValue(trigger), cancellationToken);
            var id = await EventTriggerAdmin.InvokeAsync(dataSource, parse.GetValue(trigger)!, json, cancellationToken);
            Console.WriteLine($"event {id} captured");
            return ExitCodes.Done;
        }));
        return command;
    }

    private static Option<string?> LockTimeout() =>
        new("--lock-timeout") { Description = "How long to wait for the table's lock before giving up, e.g. 5s, 1m; 0 waits without limit (default 5s)." };

    private static TimeSpan ParseLockTimeout(string? text) =>
        text is null ? EventTriggerAdmin.DefaultLockTimeout
        : text == "0" ? TimeSpan.Zero
        : Duration.TryParse(text, out var value) ? value
        : throw new UsageException($"--lock-timeout '{text}' is not a duration: use e.g. 5s, 30s, 2m, or 0 to wait without limit");

    /// <summary>Accepts both "--ops INSERT UPDATE" and "--ops INSERT,UPDATE".</summary>
    private static string[]? Split(string[]? values) =>
        values is null || values.Length == 0
            ? null
            : [.. values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))];
}
