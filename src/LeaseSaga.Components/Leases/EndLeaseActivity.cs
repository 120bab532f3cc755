using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>The instance released the lease: its worker goes idle, or to its instance's next lease in line.</summary>
public sealed class EndLeaseActivity(Allocator allocator, TimeProvider clock, ILogger<LeaseStateMachine> logger)
    : InstanceActivity<LeaseState>
{
    protected override async Task Execute(BehaviorContext<LeaseState> context)
    {
        var lease = context.Saga;
        lease.EndedAt = clock.GetUtcNow();
        logger.LogInformation("Lease {LeaseId} of {InstanceId} released worker {WorkerId}",
            lease.CorrelationId, lease.InstanceId, lease.WorkerId);
        await allocator.EndLeaseAsync(context, lease.WorkerId!.Value, lease.CorrelationId);
    }
}
