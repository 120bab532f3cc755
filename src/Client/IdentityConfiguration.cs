using MassTransit;

namespace DynamicWorkers.Client;

public static class IdentityConfiguration
{
    /// <summary>
    /// What a bus needs to talk to Dynamic Workers as <paramref name="username"/> on a broker with tenancy on: every
    /// message carries the AMQP <c>user_id</c> (RabbitMQ checks it is the connection's user; the service takes the
    /// instance from it), and the bus's response queue is named after the user (<c>username.&lt;32 hex&gt;</c>), which
    /// is the only queue an instance's user may read. Call it in <c>UsingRabbitMq</c> when the client shares the app's
    /// own bus.
    /// </summary>
    public static void UseDynamicWorkersIdentity(this IRabbitMqBusFactoryConfigurator cfg, string username)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(username);
        cfg.OverrideDefaultBusEndpointQueueName($"{username}.{NewId.NextGuid():N}");
        cfg.ConfigureSend(s => s.UseSendExecute(c => SetUserId(c, username)));
        cfg.ConfigurePublish(p => p.UseExecute(c => SetUserId(c, username)));
    }

    static void SetUserId(SendContext context, string username)
    {
        if (context.TryGetPayload(out RabbitMqSendContext? rabbit))
        {
            rabbit.BasicProperties.UserId = username;
        }
    }
}
