using System.CommandLine;

namespace DynamicWorkers.Cli;

/// <summary>
/// <c>dw broker setup</c> and <c>dw instance add|remove-user</c>: the broker's users, through its management API.
/// </summary>
public static class BrokerCommands
{
    public const string ManagementVariable = "DW_RABBITMQ_MANAGEMENT";
    public const string ManagementUserVariable = "DW_RABBITMQ_MANAGEMENT_USER";
    public const string ManagementPasswordVariable = "DW_RABBITMQ_MANAGEMENT_PASSWORD";

    static readonly Option<string?> Management = new("--management")
    {
        Description = "RabbitMQ management API with an administrator's login, e.g. http://admin:password@host:15672 "
            + $"(default: ${ManagementVariable}; a login left out of the URI comes from ${ManagementUserVariable} "
            + $"and ${ManagementPasswordVariable})",
    };

    static readonly Option<string> VirtualHost = new("--vhost")
    {
        Description = "The virtual host", DefaultValueFactory = _ => "/",
    };

    public static Command Broker()
    {
        var setup = new Command("setup", $"""
            Create or update the services' users ({string.Join(", ", BrokerUsers.Services.Keys)}: full rights, impersonators) and the
            operator's ({BrokerUsers.Operator}: the public contract only, administrator of the broker), with passwords from
            {string.Join(", ", BrokerUsers.Services.Values)} and {BrokerUsers.OperatorPasswordVariable}. Idempotent.
            """) { Management, VirtualHost };
        setup.SetAction((parse, cancellationToken) => WithManagementAsync(parse, cancellationToken,
            async (management, output, vhost, ct) =>
        {
            var missing = BrokerUsers.Services.Values.Append(BrokerUsers.OperatorPasswordVariable)
                .Where(v => string.IsNullOrEmpty(Environment.GetEnvironmentVariable(v))).ToList();
            if (missing.Count > 0)
            {
                output.Error($"set {string.Join(", ", missing)} (each user's password)");
                return ExitCodes.Usage;
            }

            foreach (var (user, variable) in BrokerUsers.Services)
            {
                await management.PutUserAsync(vhost, user, Environment.GetEnvironmentVariable(variable)!,
                    BrokerUsers.ServiceTags, BrokerUsers.ServicePermissions, ct);
            }

            await management.PutUserAsync(vhost, BrokerUsers.Operator,
                Environment.GetEnvironmentVariable(BrokerUsers.OperatorPasswordVariable)!,
                "administrator", BrokerUsers.OperatorPermissions(), ct);
            output.WriteLine($"users {string.Join(", ", BrokerUsers.Services.Keys)} and {BrokerUsers.Operator} "
                + $"are set up in virtual host {vhost}");
            return ExitCodes.Success;
        }));
        return new Command("broker", "The broker's users and permissions") { setup };
    }

    /// <summary><c>dw instance add</c>: the instance's own user, and the AMQP URI its client connects with.</summary>
    public static Command AddInstance()
    {
        var id = new Option<string>("--instance")
        {
            Description = "The instance id (its user is instance-<id>)", Required = true,
        };
        var password = new Option<string?>("--password")
        {
            Description = "The user's password (default: a new random one)",
        };
        var command = new Command("add",
            "Create (or update) an instance's broker user, allowed only its own requests and replies; "
            + "prints its AMQP URI")
        {
            id, password, Management, VirtualHost,
        };
        command.SetAction((parse, cancellationToken) => WithManagementAsync(parse, cancellationToken,
            async (management, output, vhost, ct) =>
        {
            var instanceId = parse.GetRequiredValue(id);
            if (string.IsNullOrWhiteSpace(instanceId) || instanceId.Length > 200)
            {
                output.Error("--instance must be 1 to 200 characters");
                return ExitCodes.Usage;
            }

            var user = BrokerUsers.InstanceUser(instanceId);
            var secret = parse.GetValue(password) ?? BrokerUsers.NewPassword();
            await management.PutUserAsync(vhost, user, secret, "", BrokerUsers.InstancePermissions(instanceId), ct);
            var host = new Uri(parse.GetValue(Management)
                ?? Environment.GetEnvironmentVariable(ManagementVariable)!).Host;
            var uri = $"amqp://{Uri.EscapeDataString(user)}:{Uri.EscapeDataString(secret)}@{host}:5672/"
                + $"{Uri.EscapeDataString(vhost)}";
            if (output.Json)
            {
                output.WriteJson(new { instanceId, user, uri });
            }
            else
            {
                output.WriteLine(uri);
            }

            return ExitCodes.Success;
        }));
        return command;
    }

    static async Task<int> WithManagementAsync(ParseResult parse, CancellationToken cancellationToken,
        Func<RabbitMqManagement, Output, string, CancellationToken, Task<int>> body)
    {
        var output = Connection.OutputOf(parse);
        var text = parse.GetValue(Management) ?? Environment.GetEnvironmentVariable(ManagementVariable);
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            output.Error($"pass --management http://admin:password@host:15672 (or set {ManagementVariable})");
            return ExitCodes.Usage;
        }

        var login = uri.UserInfo.Split(':', 2);
        var (user, password) = login.Length == 2 && login[0].Length > 0
            ? (Uri.UnescapeDataString(login[0]), Uri.UnescapeDataString(login[1]))
            : (Environment.GetEnvironmentVariable(ManagementUserVariable),
                Environment.GetEnvironmentVariable(ManagementPasswordVariable));
        if (string.IsNullOrEmpty(user) || string.IsNullOrEmpty(password))
        {
            output.Error("the management API needs an administrator's login: in the URI "
                + $"(http://admin:password@host:15672) or in {ManagementUserVariable} and "
                + $"{ManagementPasswordVariable}");
            return ExitCodes.Usage;
        }

        try
        {
            using var management = new RabbitMqManagement(uri, user, password);
            return await body(management, output, parse.GetValue(VirtualHost) ?? "/", cancellationToken);
        }
        catch (HttpRequestException e) when (e.StatusCode is null)
        {
            output.Error($"RabbitMQ management API at {uri.Host}:{uri.Port} is unreachable: {e.Message}");
            return ExitCodes.Unreachable;
        }
        catch (HttpRequestException e)
        {
            output.Error(e.Message);
            return ExitCodes.Failed;
        }
    }
}
