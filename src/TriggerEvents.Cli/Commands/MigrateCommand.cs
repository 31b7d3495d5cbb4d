using System.CommandLine;
using TriggerEvents.Postgres.Migrations;

namespace TriggerEvents.Cli.Commands;

internal static class MigrateCommand
{
    public static Command Create()
    {
        var print = new Option<bool>("--print") { Description = "Write the SQL to standard output instead of applying it." };
        var command = new Command("migrate", """
            Install or upgrade the trigger_events schema. Safe to run from several processes at
            once; refuses a database migrated by a newer TriggerEvents.

            Examples:
              triggerevents migrate
              triggerevents migrate --print > trigger_events.sql
            """)
        {
            print,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            if (parse.GetValue(print))
            {
                Migrator.WriteScript(Console.Out);
                return ExitCodes.Done;
            }

            await using var dataSource = CommandLine.OpenDatabase();
            var result = await Migrator.MigrateAsync(dataSource, cancellationToken);
            Console.WriteLine(result.Applied.Count == 0
                ? $"Schema is current (version {result.ToVersion})."
                : $"Migrated from version {result.FromVersion} to {result.ToVersion} ({result.Applied.Count} applied).");
            return ExitCodes.Done;
        }));
        return command;
    }
}
