using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>Ends the lease with the rejection chosen for it and answers.</summary>
public sealed class RejectLeaseActivity(TimeProvider clock, ILogger<LeaseStateMachine> logger)
    : InstanceActivity<LeaseState>
{
    protected override Task Execute(BehaviorContext<LeaseState> context)
    {
        var lease = context.Saga;
        lease.EndedAt = clock.GetUtcNow();
        logger.LogInformation("Lease {LeaseId} of {InstanceId} rejected: {Reason}: {Detail}",
            lease.CorrelationId, lease.InstanceId, lease.RejectReason, lease.RejectDetail);
        return LeaseAnswers.AnswerClient(context, LeaseAnswers.RejectionOf(lease));
    }
}
