using TriggerEvents.Cli;

return await CommandLine.RunAsync(args);
