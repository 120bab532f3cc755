using DynamicWorkers.Contracts.Internal;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>Its worker ends the lease (a deadline of the worker's): the instance is told.</summary>
public sealed class RevokeLeaseActivity(TimeProvider clock, ILogger<LeaseStateMachine> logger)
    : MessageActivity<LeaseState, RevokeLease>
{
    protected override Task Execute(BehaviorContext<LeaseState, RevokeLease> context)
    {
        var lease = context.Saga;
        lease.RevokeReason = context.Message.Reason;
        lease.EndedAt = clock.GetUtcNow();
        logger.LogInformation("Lease {LeaseId} of {InstanceId} revoked: {Reason}",
            lease.CorrelationId, lease.InstanceId, lease.RevokeReason);
        return context.Publish(LeaseAnswers.RevocationOf(lease));
    }
}
