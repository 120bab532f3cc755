using System.CommandLine;
using DynamicWorkers.Cli;

// `dw`, the ops and instance command line over RabbitMQ (through DynamicWorkers.Client).
var root = new RootCommand($"""
    dw: the Dynamic Workers command line (leases, pools, workers, instances) over RabbitMQ.
    Connect with --rabbitmq amqp://user:password@host:5672/vhost or the {Connection.EnvironmentVariable} environment variable.

    {ExitCodes.Help}
    """)
{
    Connection.RabbitMq,
    Connection.Json,
    Connection.Timeout,
};
root.Subcommands.Add(LeaseCommands.Create());
root.Subcommands.Add(OpsCommands.Pool());
root.Subcommands.Add(OpsCommands.Workers());
root.Subcommands.Add(OpsCommands.Leases());
root.Subcommands.Add(OpsCommands.Instance());
root.Subcommands.Add(BrokerCommands.Broker());

var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    // System.CommandLine would exit 1; a usage error has its own code.
    foreach (var error in parse.Errors)
    {
        await Console.Error.WriteLineAsync($"dw: {error.Message}");
    }

    await Console.Error.WriteLineAsync("Run 'dw --help' (or 'dw <command> --help') for usage.");
    return ExitCodes.Usage;
}

return await parse.InvokeAsync();
