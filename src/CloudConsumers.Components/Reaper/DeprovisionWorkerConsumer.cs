using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts.Internal;
using MassTransit;

namespace DynamicWorkers.Reaper;

/// <summary>Deletes a worker's VM; a VM already gone counts as deleted, so redeliveries are harmless.</summary>
public sealed class DeprovisionWorkerConsumer(IWorkerCloud cloud) : IConsumer<DeprovisionWorker>
{
    public async Task Consume(ConsumeContext<DeprovisionWorker> context)
    {
        await cloud.DeleteAsync(context.Message.WorkerId, context.CancellationToken);
        await context.Publish(new WorkerDeprovisioned(context.Message.WorkerId), context.CancellationToken);
    }
}

public sealed class DeprovisionWorkerConsumerDefinition : ConsumerDefinition<DeprovisionWorkerConsumer>
{
    public DeprovisionWorkerConsumerDefinition()
    {
        EndpointName = CloudQueues.DeprovisionWorker;
        ConcurrentMessageLimit = 8;
    }
}
