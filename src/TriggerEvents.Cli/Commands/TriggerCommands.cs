using System.CommandLine;
using System.Text.Json;
using Npgsql;
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
        var command = new Command("attach", """
            Create or replace an event trigger on a table. Idempotent: the same call again changes nothing.

            Examples:
              triggerevents attach orders --trigger orders_changed
              triggerevents attach orders --trigger orders_paid --ops UPDATE --update-columns status --when "NEW.status = 'paid'"
            """)
        {
            table, trigger, ops, updateColumns, payloadColumns, when, noNotify,
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
                    !parse.GetValue(noNotify), cancellationToken);
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
        var command = new Command("detach", """
            Remove an event trigger. Events it captured stay and are delivered.

            Examples:
              triggerevents detach orders_changed
            """)
        {
            name,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            await using var dataSource = CommandLine.OpenDatabase();
            if (!await EventTriggerAdmin.DetachAsync(dataSource, parse.GetValue(name)!, cancellationToken))
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
                ["TRIGGER", "TABLE", "OPERATIONS", "UPDATE COLUMNS", "PAYLOAD COLUMNS", "CONDITION", "NOTIFY"],
                triggers.Select(t => new[]
                {
                    t.Name, t.TableExists ? $"{t.TableSchema}.{t.TableName}" : "(dropped)", string.Join(',', t.Operations),
                    t.UpdateColumns is null ? "any" : string.Join(',', t.UpdateColumns),
                    t.PayloadColumns is null ? "all" : string.Join(',', t.PayloadColumns),
                    t.Condition ?? "", t.Notify ? "yes" : "no",
                }));
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

    /// <summary>Accepts both "--ops INSERT UPDATE" and "--ops INSERT,UPDATE".</summary>
    private static string[]? Split(string[]? values) =>
        values is null || values.Length == 0
            ? null
            : [.. values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))];
}
