using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.IntegrationTests.Contracts;

/// <summary>On the real broker, a published contract message lands in the fanout exchange DESIGN.md names.</summary>
public sealed class WireNameTests(RabbitMqTestVirtualHost broker) : IClassFixture<RabbitMqTestVirtualHost>
{
    [Fact]
    public async Task Published_messages_go_to_exchanges_named_after_their_urns()
    {
        using var host = await TestBus.StartAsync(broker.Settings, _ => { });
        var bus = host.Services.GetRequiredService<IBus>();

        object[] messages =
        [
            new LeaseRequested(Guid.NewGuid(), "instance", new string('a', 40), "pool", null, DateTimeOffset.UtcNow),
            new LeaseGranted(Guid.NewGuid(), "instance", Guid.NewGuid(), "10.0.0.4:10933", new string('b', 40), false,
                DateTimeOffset.UtcNow, DateTimeOffset.UtcNow),
            new LeaseRejected(Guid.NewGuid(), "instance", LeaseRejectionReasons.NoCapacity, "detail"),
            new LeaseReleased(Guid.NewGuid(), "instance"),
            new LeaseRevoked(Guid.NewGuid(), "instance", Guid.NewGuid(), LeaseRevocationReasons.WorkerLost),
            new SetInstanceLifecycle("instance", null, null, null),
            new SetPoolSize("pool", 1, 2),
            new SetPoolImage("pool", "image"),
        ];
        foreach (var message in messages)
        {
            await bus.Publish(message);
        }

        foreach (var message in messages)
        {
            Assert.True(await broker.ExchangeExistsAsync($"DynamicWorkers.Contracts:{message.GetType().Name}"),
                message.GetType().Name);
        }

        await host.StopAsync();
    }
}
