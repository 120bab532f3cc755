using MassTransit;

namespace DynamicWorkers.Provisioner;

/// <summary>
/// What the provisioner adds to a host (its own, or Standalone): the <c>ProvisionWorker</c> endpoint.
/// </summary>
public static class ProvisionerModule
{
    public static void AddProvisionerEndpoints(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<ProvisionWorkerConsumer, ProvisionWorkerConsumerDefinition>();
    }
}
