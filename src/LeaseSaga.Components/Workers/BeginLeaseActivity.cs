using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Instances;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>The worker trusts its instance: from now on the instance's own limits apply; its lease starts.</summary>
public sealed class BeginLeaseActivity(
    InstanceLifecycles lifecycles, TimeProvider clock, ILogger<WorkerStateMachine> logger)
    : MessageActivity<WorkerState, WorkerTrusted>
{
    protected override async Task Execute(BehaviorContext<WorkerState, WorkerTrusted> context)
    {
        var worker = context.Saga;
        var limits = await lifecycles.ForAsync(worker.TrustedInstanceId, context.CancellationToken);
        worker.MaxAgeDeadline = worker.ProvisionedAt + limits.MaxWorkerAge;
        worker.AgentThumbprint = context.Message.AgentThumbprint;
        worker.LeaseExpiresAt = Allocator.WholeMilliseconds(clock.GetUtcNow()) + limits.MaxLeaseDuration;
        worker.LeaseCount++;
        logger.LogStep(worker, "leased");
    }
}
