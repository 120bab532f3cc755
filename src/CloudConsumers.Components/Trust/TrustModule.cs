using MassTransit;

namespace DynamicWorkers.Trust;

/// <summary>What the trust service adds to a host (its own, or Standalone): the <c>TrustWorker</c> endpoint.</summary>
public static class TrustModule
{
    public static void AddTrustEndpoints(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<TrustWorkerConsumer, TrustWorkerConsumerDefinition>();
    }
}
