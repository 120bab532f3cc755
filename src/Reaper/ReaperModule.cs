using MassTransit;

namespace DynamicWorkers.Reaper;

/// <summary>What the reaper adds to a host (its own, or Standalone): the <c>DeprovisionWorker</c> endpoint and the sweep.</summary>
public static class ReaperModule
{
    public static void AddReaperEndpoints(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<DeprovisionWorkerConsumer, DeprovisionWorkerConsumerDefinition>();
    }
}
