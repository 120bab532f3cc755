using System.Text;
using RabbitMQ.Client;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>A message as it sat in a queue: its id, headers (strings) and body.</summary>
public sealed record RawMessage(string? MessageId, IReadOnlyDictionary<string, string> Headers, string Body);

/// <summary>
/// Plain AMQP 0-9-1 (RabbitMQ.Client, no MassTransit): what a hostile or broken client can put on the wire,
/// and a way to read what landed in a queue.
/// </summary>
public sealed class RawAmqp : IAsyncDisposable
{
    public const string MassTransitJson = "application/vnd.masstransit+json";

    readonly IConnection _connection;
    IChannel _channel;

    RawAmqp(IConnection connection, IChannel channel)
    {
        _connection = connection;
        _channel = channel;
    }

    public static async Task<RawAmqp> ConnectAsync(string virtualHost)
    {
        var factory = new ConnectionFactory
        {
            HostName = TestServers.RabbitMqHost,
            UserName = TestServers.RabbitMqUser,
            Password = TestServers.RabbitMqPassword,
            VirtualHost = virtualHost,
        };
        var connection = await factory.CreateConnectionAsync();
        return new RawAmqp(connection, await connection.CreateChannelAsync());
    }

    /// <summary>
    /// Publishes <paramref name="body"/> as it is to an exchange (or, with <paramref name="toQueue"/>, straight
    /// to a queue through the default exchange), persistent, with the given message id and content type.
    /// </summary>
    public async Task PublishAsync(string exchangeOrQueue, string body, string messageId, bool toQueue = false,
        string contentType = MassTransitJson)
    {
        // user_id: the services take the sender from it (Tenancy); RabbitMQ checks it is this connection's user.
        var properties = new BasicProperties { ContentType = contentType, MessageId = messageId, Persistent = true,
            UserId = TestServers.RabbitMqUser };
        await _channel.BasicPublishAsync(toQueue ? "" : exchangeOrQueue, toQueue ? exchangeOrQueue : "", false,
            properties, Encoding.UTF8.GetBytes(body));
    }

    /// <summary>A MassTransit envelope around <paramref name="message"/> (raw JSON) with the given message type
    /// URN.</summary>
    public static string Envelope(string messageId, string messageTypeUrn, string message)
        => $$"""{"messageId":"{{messageId}}","messageType":["{{messageTypeUrn}}"],"sentTime":"{{DateTime.UtcNow:O}}","message":{{message}}}""";

    /// <summary>Takes every message now in the queue (acknowledging them).</summary>
    public async Task<IReadOnlyList<RawMessage>> DrainAsync(string queue)
    {
        var messages = new List<RawMessage>();
        try
        {
            while (await _channel.BasicGetAsync(queue, autoAck: true) is { } result)
            {
                var headers = (result.BasicProperties.Headers ?? new Dictionary<string, object?>())
                    .ToDictionary(h => h.Key, h => h.Value switch
                    {
                        byte[] bytes => Encoding.UTF8.GetString(bytes),
                        null => "",
                        var other => other.ToString() ?? "",
                    });
                messages.Add(new RawMessage(result.BasicProperties.MessageId, headers,
                    Encoding.UTF8.GetString(result.Body.Span)));
            }
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            // The queue does not exist (yet): nothing landed there. The broker closed the channel; open another.
            _channel = await _connection.CreateChannelAsync();
        }

        return messages;
    }

    /// <summary>How many consumers each queue has now (a queue that does not exist counts none).</summary>
    public async Task<IReadOnlyDictionary<string, uint>> ConsumersAsync(IEnumerable<string> queues)
    {
        var consumers = new Dictionary<string, uint>();
        foreach (var queue in queues)
        {
            try
            {
                consumers[queue] = (await _channel.QueueDeclarePassiveAsync(queue)).ConsumerCount;
            }
            catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
            {
                // The broker closed the channel on the missing queue; open another.
                consumers[queue] = 0;
                _channel = await _connection.CreateChannelAsync();
            }
        }

        return consumers;
    }

    public async ValueTask DisposeAsync()
    {
        await _channel.DisposeAsync();
        await _connection.DisposeAsync();
    }
}
