using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts.Internal;
using MassTransit;

namespace DynamicWorkers.Provisioner;

/// <summary>Creates a worker's VM. A refusal by the cloud is reported; anything else is retried by the bus.</summary>
public sealed class ProvisionWorkerConsumer(IWorkerCloud cloud) : IConsumer<ProvisionWorker>
{
    public async Task Consume(ConsumeContext<ProvisionWorker> context)
    {
        var message = context.Message;
        CloudVm vm;
        try
        {
            vm = await cloud.CreateAsync(message.WorkerId, new VmSpec(message.Pool, message.Image, message.Size),
                context.CancellationToken);
        }
        catch (WorkerCloudException e)
        {
            await context.Publish(new WorkerProvisioningFailed(message.WorkerId, e.Reason), context.CancellationToken);
            return;
        }

        await context.Publish(new WorkerProvisioned(vm.WorkerId, vm.Address, vm.AgentThumbprint, DateTimeOffset.UtcNow),
            context.CancellationToken);
    }
}

public sealed class ProvisionWorkerConsumerDefinition : ConsumerDefinition<ProvisionWorkerConsumer>
{
    public ProvisionWorkerConsumerDefinition(CloudLimits limits)
    {
        // Creating a VM mostly waits on the cloud: as many at once as the cloud's create cap
        // (Cloud:Azure:MaxConcurrentCreates), so that cap is what bounds one copy, not a lower number here.
        EndpointName = CloudQueues.ProvisionWorker;
        ConcurrentMessageLimit = limits.ConcurrentCreates;
    }
}
