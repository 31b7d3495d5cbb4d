using System.CommandLine;
using Npgsql;
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
            MigrationResult result;
            try
            {
                result = await Migrator.MigrateAsync(dataSource, cancellationToken);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
            {
                // Each migration is one transaction: the one refused changed nothing.
                var role = new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).Username ?? Environment.UserName;
                throw new InvalidOperationException(
                    $"{e.MessageText} ({e.SqlState}): migrate creates and changes the trigger_events schema, so it runs as the schema's owner " +
                    $"(to install it, a role with CREATE on the database), which the role {role} is not; nothing was changed. " +
                    "The worker needs less: deploy/worker-role.sql");
            }

            Console.WriteLine(result.Applied.Count == 0
                ? $"Schema is current (version {result.ToVersion})."
                : $"Migrated from version {result.FromVersion} to {result.ToVersion} ({result.Applied.Count} applied).");
            return ExitCodes.Done;
        }));
        return command;
    }
}
