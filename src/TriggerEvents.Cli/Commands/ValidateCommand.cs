using System.CommandLine;

namespace TriggerEvents.Cli.Commands;

internal static class ValidateCommand
{
    public static Command Create()
    {
        var config = CommonOptions.Config();
        var command = new Command("validate", """
            Check a configuration file. Prints every problem as file:line:col: message and exits 2
            when there is one; substitutes ${VAR} and ${VAR:-default} from the environment.

            Examples:
              triggerevents validate --config triggerevents.yaml
            """)
        {
            config,
        };
        command.SetAction((parse, _) => CommandLine.RunAction(parse, () =>
        {
            var loaded = CommonOptions.LoadConfig(parse.GetValue(config));
            Console.WriteLine($"{loaded.SourcePath}: {loaded.Subscriptions.Count} subscriptions, valid.");
            return Task.FromResult(ExitCodes.Done);
        }));
        return command;
    }
}
