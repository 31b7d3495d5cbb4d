using System.CommandLine;
using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Postgres.Migrations;

namespace TriggerEvents.Cli.Commands;

internal static class MigrateCommand
{
    public static Command Create()
    {
        var print = new Option<bool>("--print") { Description = "Write the SQL to standard output instead of applying it." };
        var lockTimeout = new Option<string?>("--lock-timeout")
        {
            Description = "How long one try of a migration waits for a table's lock, or 0 to wait without limit (default 5s).",
        };
        var lockTries = new Option<int?>("--lock-tries")
        {
            Description = "How many times a migration that gave up waiting is tried, with pauses of 1s up to 15s between tries (default 10).",
        };
        var command = new Command("migrate", """
            Install or upgrade the trigger_events schema. Safe to run from several processes at
            once; refuses a database migrated by a newer TriggerEvents, saying whether this
            release's workers run on it.

            Each migration is one transaction. One that changes attached tables' triggers takes a
            lock on each table; waiting for it behind a transaction left open, it would hold up
            every write to that table. So it waits at most --lock-timeout, rolls back, lets the
            writers run and tries again, naming the sessions that held the locks; after
            --lock-tries it stops (exit 1) with the earlier migrations applied.

            Examples:
              triggerevents migrate
              triggerevents migrate --lock-timeout 2s --lock-tries 30
              triggerevents migrate --print > trigger_events.sql
            """)
        {
            print, lockTimeout, lockTries,
        };
        command.SetAction((parse, cancellationToken) => CommandLine.RunAction(parse, async () =>
        {
            if (parse.GetValue(print))
            {
                Migrator.WriteScript(Console.Out);
                return ExitCodes.Done;
            }

            var locks = ParseLockPolicy(parse.GetValue(lockTimeout), parse.GetValue(lockTries)) with
            {
                Waiting = wait => Console.Error.WriteLine(
                    $"triggerevents: migration {wait.Migration.Version} ({wait.Migration.Name}) gave up waiting for a lock ({wait.Reason}), " +
                    $"try {wait.Try} of {wait.Tries}; trying again in {wait.Pause.TotalSeconds:0.#}s" +
                    (wait.Holders.Count == 0 ? "" : "; held by " + string.Join("; ", wait.Holders))),
            };
            await using var dataSource = CommandLine.OpenDatabase();
            MigrationResult result;
            try
            {
                result = await Migrator.MigrateAsync(dataSource, locks, cancellationToken);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege && e.MessageText.StartsWith("trigger_events:", StringComparison.Ordinal))
            {
                // The schema's own refusal (a capture trigger only the table's owner may set up
                // again): it says what to do, and the migration that met it changed nothing.
                throw new InvalidOperationException($"{e.MessageText} ({e.SqlState}). {e.Hint} Nothing of that migration was applied.");
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
            if (result.Repaired is not null)
            {
                Console.WriteLine($"Repaired a database moved here: {result.Repaired}.");
            }
            return ExitCodes.Done;
        }));
        return command;
    }

    private static MigrationLockPolicy ParseLockPolicy(string? timeout, int? tries)
    {
        var policy = MigrationLockPolicy.Default;
        if (timeout is not null)
        {
            policy = timeout == "0" ? policy with { LockTimeout = TimeSpan.Zero }
                : Duration.TryParse(timeout, out var value) ? policy with { LockTimeout = value }
                : throw new UsageException($"--lock-timeout: '{timeout}' is not a duration ({Duration.Examples}) or 0");
        }

        return tries switch
        {
            null => policy,
            >= 1 => policy with { Tries = tries.Value },
            _ => throw new UsageException($"--lock-tries: {tries} is not 1 or more"),
        };
    }
}
