using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>
/// The allocation deadline passed. A lease whose worker already serves it lost only the <see cref="WorkerLeased"/> that
/// would have granted it (else the worker would stay leased to a rejected lease until its max duration): that worker is
/// chosen for the grant. Any other gets <c>NoCapacity</c> as its rejection.
/// </summary>
public sealed class GiveUpLeaseActivity(Allocator allocator) : MessageActivity<LeaseState, LeaseAllocationTimedOut>
{
    protected override async Task Execute(BehaviorContext<LeaseState, LeaseAllocationTimedOut> context)
    {
        var lease = context.Saga;
        var worker = lease.WorkerId is { } workerId
            ? await allocator.ServingAsync(workerId, lease.CorrelationId, context.CancellationToken)
            : null;
        if (worker is not null)
        {
            GrantLeaseActivity.Choose(lease, worker.CorrelationId, worker.Address!, worker.AgentThumbprint!,
                reused: worker.LeaseCount > 1, worker.LeaseExpiresAt!.Value);
            return;
        }

        lease.RejectReason = LeaseRejectionReasons.NoCapacity;
        lease.RejectDetail = $"no worker of pool '{lease.Pool}' became available within {lease.AllocationTimeout}; "
            + "the pool is at its maximum or its workers fail to start";
    }
}
