using System.CommandLine;
using DynamicWorkers.Client;

namespace DynamicWorkers.Cli;

/// <summary>
/// The options every command shares, and the one way a command gets connected and turns failures into exit codes.
/// </summary>
public static class Connection
{
    public const string EnvironmentVariable = "DW_RABBITMQ";

    public static readonly Option<string?> RabbitMq = new("--rabbitmq")
    {
        Description = $"RabbitMQ AMQP URI, e.g. amqp://user:password@host:5672/vhost (default: ${EnvironmentVariable})",
        Recursive = true,
    };

    public static readonly Option<bool> Json = new("--json")
    {
        Description = "Write JSON to stdout instead of tables, for scripts",
        Recursive = true,
    };

    public static readonly Option<TimeSpan> Timeout = new("--timeout")
    {
        Description = "How long to wait for the broker and for answers (500ms, 30s, 5m, 01:00:00)",
        Recursive = true,
        DefaultValueFactory = _ => TimeSpan.FromSeconds(30),
        CustomParser = result =>
        {
            var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (Durations.TryParse(text, out var value) && value > TimeSpan.Zero)
            {
                return value;
            }

            result.AddError($"--timeout: '{text}' is not a positive duration (e.g. 30s, 5m, 00:01:00)");
            return default;
        },
    };

    /// <summary>
    /// How long connecting may take at most, whatever --timeout says: an unreachable broker is reported quickly.
    /// </summary>
    static readonly TimeSpan ConnectDeadline = TimeSpan.FromSeconds(10);

    public static Output OutputOf(ParseResult parse)
        => new(parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error, parse.GetValue(Json));

    /// <summary>
    /// Connects (from --rabbitmq or DW_RABBITMQ), runs <paramref name="body"/> and maps what can go wrong to an exit
    /// code. Callers validate their own input first, so a usage error never touches the broker.
    /// </summary>
    public static async Task<int> RunAsync(ParseResult parse, CancellationToken cancellationToken,
        Func<DynamicWorkersClient, Output, TimeSpan, CancellationToken, Task<int>> body)
    {
        var output = OutputOf(parse);
        var text = parse.GetValue(RabbitMq) ?? Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(text))
        {
            output.Error(
                $"no broker: pass --rabbitmq amqp://user:password@host:5672/vhost or set {EnvironmentVariable}");
            return ExitCodes.Usage;
        }

        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("amqp" or "amqps"))
        {
            output.Error("--rabbitmq must be an AMQP URI like amqp://user:password@host:5672/vhost");
            return ExitCodes.Usage;
        }

        var timeout = parse.GetValue(Timeout);
        var options = new DynamicWorkersClientOptions { LeaseDeadline = timeout, QueryDeadline = timeout };
        try
        {
            using var connect = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            connect.CancelAfter(timeout < ConnectDeadline ? timeout : ConnectDeadline);
            await using var client = await DynamicWorkersClient.ConnectAsync(uri, options, connect.Token);
            return await body(client, output, timeout, cancellationToken);
        }
        catch (DynamicWorkersUnreachableException e) when (!cancellationToken.IsCancellationRequested)
        {
            output.Error(e.Message);
            return ExitCodes.Unreachable;
        }
        catch (DynamicWorkersTimeoutException e)
        {
            output.Error(e.Message);
            return ExitCodes.TimedOut;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            output.Error("cancelled");
            return ExitCodes.Failed;
        }
        catch (MassTransit.RequestFaultException e)
        {
            // The service took the request and failed on it (its log has the details).
            output.Error($"the service failed to answer: {e.Fault?.Exceptions.FirstOrDefault()?.Message ?? e.Message}");
            return ExitCodes.Failed;
        }
    }
}
