using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>
/// Provisioned: it takes the lease that has waited longest, if any, else it is a hot worker unless the pool now has
/// too many or was removed. Leaves the worker's state as the pool decided: Ready, Trusting or Reaping.
/// </summary>
public sealed class BecomeReadyActivity(Allocator allocator, IOptionsMonitor<LifecycleOptions> lifecycle)
    : MessageActivity<WorkerState, WorkerProvisioned>
{
    protected override async Task Execute(BehaviorContext<WorkerState, WorkerProvisioned> context)
    {
        var worker = context.Saga;
        var provisioned = context.Message;
        worker.Address = provisioned.Address;
        worker.AgentThumbprint = provisioned.AgentThumbprint;
        worker.ProvisionedAt = provisioned.ProvisionedAt;
        worker.MaxAgeDeadline = provisioned.ProvisionedAt + lifecycle.CurrentValue.MaxWorkerAge;
        DwTelemetry.ProvisionDuration.Record(
            (provisioned.ProvisionedAt - worker.CreatedAt).TotalSeconds, WorkerSteps.PoolTag(worker));

        var pool = await allocator.LockPoolAsync(worker.Pool, context.CancellationToken);
        pool.ConsecutiveFailures = 0;
        worker.CurrentState = WorkerStates.Ready;
        // A removed pool's line is being rejected: the worker serves none of it and the rebalance deletes it.
        if (!allocator.IsDraining(worker.Pool)
            && await allocator.ClaimWaitingAsync(worker.Pool, context.CancellationToken) is { } lease)
        {
            await allocator.AssignAsync(context, worker, lease);
        }

        await allocator.RebalanceAsync(context, pool, readyWorker: worker);
    }
}
