using DynamicWorkers.Cloud;
using DynamicWorkers.Provisioner;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace DynamicWorkers.UnitTests.Cloud;

/// <summary>The Provisioner takes as many <c>ProvisionWorker</c> at once as the cloud's create cap, so the cap is what
/// bounds it.</summary>
public sealed class CreateCapTests
{
    [Theory]
    [InlineData("3", 3)]
    [InlineData("40", 40)]
    [InlineData(null, 10)]
    public void The_provision_consumer_limit_follows_the_azure_create_cap(string? cap, int expected)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Cloud:Provider"] = "Azure",
            ["Cloud:Azure:SubscriptionId"] = "00000000-0000-0000-0000-00000000d0d0",
            ["Cloud:Azure:ResourceGroup"] = "dw-workers",
            ["Cloud:Azure:Location"] = "westeurope",
            ["Cloud:Azure:SubnetId"] = "/subscriptions/00000000-0000-0000-0000-00000000d0d0/resourceGroups/net"
                + "/providers/Microsoft.Network/virtualNetworks/v/subnets/s",
            ["Cloud:Azure:AdminPassword"] = "Unit-Test-Passw0rd!",
        };
        if (cap is not null)
        {
            settings["Cloud:Azure:MaxConcurrentCreates"] = cap;
        }

        Assert.Equal(expected, ConsumerLimit(settings));
    }

    [Fact]
    public void The_simulated_cloud_keeps_its_limit()
    {
        Assert.Equal(CloudLimits.Simulated.ConcurrentCreates,
            ConsumerLimit(new Dictionary<string, string?> { ["Cloud:Provider"] = "Simulated" }));
    }

    /// <summary>The definition as MassTransit gets it: from the container the Provisioner builds.</summary>
    static int? ConsumerLimit(IReadOnlyDictionary<string, string?> settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var services = new ServiceCollection();
        services.AddWorkerCloud(configuration);
        services.AddMassTransit(bus => bus.AddProvisionerEndpoints());
        using var provider = services.BuildServiceProvider();
        return provider.GetRequiredService<IConsumerDefinition<ProvisionWorkerConsumer>>().ConcurrentMessageLimit;
    }
}
