using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;

namespace DynamicWorkers.Infrastructure.Messaging;

/// <summary>
/// Declares the queues hosts send to by name (the scheduler's and the cloud consumers'), each with its exchange and
/// binding as MassTransit's receive endpoint declares them and with the configured <see cref="RabbitMqQueueType"/>.
/// MassTransit would declare a <c>queue:</c> address's queue on first send with no arguments, which RabbitMQ refuses
/// for a quorum queue (inequivalent arg 'x-queue-type'); so hosts send to the exchange and this runs first.
/// </summary>
public sealed class SendQueueDeclarer(IOptions<RabbitMqOptions> options, IConfiguration configuration,
    ILogger<SendQueueDeclarer> logger)
    : IHostedService
{
    /// <summary>As long as MassTransit's own start may take (<c>MassTransitHostOptions.StartTimeout</c>).</summary>
    static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);

    public IReadOnlyList<string> Queues { get; } = [BusRegistration.SchedulerQueueName(configuration),
        .. CloudQueues.All];

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var rabbit = options.Value;
        var factory = new ConnectionFactory
        {
            UserName = rabbit.Username,
            Password = rabbit.Password,
            VirtualHost = rabbit.VirtualHost,
            ClientProvidedName = "dynamic-workers-declare",
        };
        var endpoints = rabbit.Nodes().Select(n => new AmqpTcpEndpoint(n.Host, n.Port)).ToList();
        var arguments = rabbit.QueueType == RabbitMqQueueType.Quorum
            ? new Dictionary<string, object?> { ["x-queue-type"] = "quorum" }
            : null;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(Deadline);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await using var connection = await factory.CreateConnectionAsync(endpoints, deadline.Token);
                await using var channel = await connection.CreateChannelAsync(cancellationToken: deadline.Token);
                foreach (var queue in Queues)
                {
                    await channel.ExchangeDeclareAsync(queue, ExchangeType.Fanout, durable: true, autoDelete: false,
                        cancellationToken: deadline.Token);
                    await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false,
                        arguments, cancellationToken: deadline.Token);
                    await channel.QueueBindAsync(queue, queue, "", cancellationToken: deadline.Token);
                }

                return;
            }
            catch (RabbitMQ.Client.Exceptions.OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == 406)
            {
                throw new InvalidOperationException(
                    $"{e.ShutdownReason.ReplyText}: the queue was declared with another type than "
                    + $"RabbitMq:QueueType={rabbit.QueueType} (see docs/operations.md on changing it)", e);
            }
            catch (Exception e) when (!deadline.IsCancellationRequested && e is not OperationCanceledException)
            {
                // The broker may be starting or failing over to another node.
                logger.LogWarning("Declaring the send queues failed (attempt {Attempt}): {Error}", attempt, e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), deadline.Token);
            }
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
