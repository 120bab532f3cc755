using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Messaging;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.UnitTests;

/// <summary>The broker settings of a cluster: the node list, its validation, the queue type, and addresses that never
/// redeclare a queue.</summary>
public sealed class RabbitMqOptionsTests
{
    [Fact]
    public void Without_a_node_list_the_host_and_port_are_the_only_node_and_queues_are_quorum()
    {
        var options = Bind(new() { ["RabbitMq:Host"] = "broker", ["RabbitMq:Port"] = "5673" });

        Assert.Equal([("broker", 5673)], options.Nodes());
        Assert.Equal(RabbitMqQueueType.Quorum, options.QueueType);
    }

    [Fact]
    public void The_node_list_binds_in_order_and_a_node_without_a_port_takes_the_configured_one()
    {
        var options = Bind(new()
        {
            ["RabbitMq:Port"] = "5671",
            ["RabbitMq:ClusterNodes:0"] = "rabbit-2:5673",
            ["RabbitMq:ClusterNodes:1"] = "rabbit-3",
            ["RabbitMq:QueueType"] = "Classic",
        });

        Assert.Equal([("rabbit-2", 5673), ("rabbit-3", 5671)], options.Nodes());
        Assert.Equal(RabbitMqQueueType.Classic, options.QueueType);
    }

    [Theory]
    [InlineData("rabbit:5672:1")]
    [InlineData("rabbit:amqp")]
    [InlineData("rabbit:0")]
    [InlineData(":5672")]
    public void A_node_that_is_not_host_or_host_port_stops_start_up_naming_it(string node)
    {
        var e = Assert.Throws<OptionsValidationException>(() => Bind(new() { ["RabbitMq:ClusterNodes:0"] = node }));

        Assert.Contains($"RabbitMq:ClusterNodes: '{node}' is not host or host:port", e.Message);
    }

    [Fact]
    public void Hosts_send_to_the_exchanges_of_the_queues_they_declare_themselves()
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Scheduler:QueueName"] = "timers" }).Build();
        var declarer = new SendQueueDeclarer(Options.Create(new RabbitMqOptions()), configuration,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<SendQueueDeclarer>.Instance);

        Assert.Equal(new Uri("exchange:timers"), BusRegistration.SchedulerAddress(configuration));
        Assert.All(CloudQueues.All, q => Assert.Equal(new Uri($"exchange:{q}"), CloudQueues.Address(q)));
        Assert.Equal(["timers", .. CloudQueues.All], declarer.Queues);
    }

    static RabbitMqOptions Bind(Dictionary<string, string?> settings)
        => new ConfigurationBuilder().AddInMemoryCollection(settings).Build().GetSection(RabbitMqOptions.Section)
            .GetValidated<RabbitMqOptions>();
}
