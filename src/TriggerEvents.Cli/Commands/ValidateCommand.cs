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
            // Which destinations the worker may call is a security decision: say it.
            Console.WriteLine(loaded.Worker.DenyPrivateNetworks
                ? "worker.deny_private_networks is on: private, loopback, link-local and metadata addresses are refused"
                : "worker.deny_private_networks is off: every address the URLs name is called, private ones included");
            return Task.FromResult(ExitCodes.Done);
        }));
        return command;
    }
}
