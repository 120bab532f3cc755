using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using MassTransit;

namespace DynamicWorkers.Trust;

/// <summary>Makes a worker trust one instance's thumbprint. A malformed thumbprint never reaches the cloud.</summary>
public sealed class TrustWorkerConsumer(IWorkerCloud cloud) : IConsumer<TrustWorker>
{
    public const string InvalidThumbprint = "InvalidThumbprint";

    public async Task Consume(ConsumeContext<TrustWorker> context)
    {
        var message = context.Message;
        if (!Thumbprint.IsValid(message.Thumbprint))
        {
            // It would end up in a command run on the worker: refuse rather than pass it on.
            await context.Publish(new WorkerTrustFailed(message.WorkerId, message.InstanceId, InvalidThumbprint),
                context.CancellationToken);
            return;
        }

        string agentThumbprint;
        try
        {
            agentThumbprint = await cloud.TrustAsync(message.WorkerId, message.InstanceId, message.Thumbprint,
                context.CancellationToken);
        }
        catch (WorkerCloudException e)
        {
            await context.Publish(new WorkerTrustFailed(message.WorkerId, message.InstanceId, e.Reason),
                context.CancellationToken);
            return;
        }

        await context.Publish(new WorkerTrusted(message.WorkerId, message.LeaseId, message.InstanceId, agentThumbprint),
            context.CancellationToken);
    }
}

public sealed class TrustWorkerConsumerDefinition : ConsumerDefinition<TrustWorkerConsumer>
{
    public TrustWorkerConsumerDefinition()
    {
        EndpointName = CloudQueues.TrustWorker;
        ConcurrentMessageLimit = 8;
    }
}
