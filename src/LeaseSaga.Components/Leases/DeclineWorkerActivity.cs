using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>A worker this lease does not hold (it ended, or has another) goes idle for its instance, unused.</summary>
public sealed class DeclineWorkerActivity(Allocator allocator, ILogger<LeaseStateMachine> logger)
    : MessageActivity<LeaseState, WorkerLeased>
{
    protected override async Task Execute(BehaviorContext<LeaseState, WorkerLeased> context)
    {
        logger.LogInformation(
            "Lease {LeaseId} of {InstanceId} in {State} does not take worker {WorkerId}; it goes idle",
            context.Saga.CorrelationId, context.Saga.InstanceId, context.Saga.CurrentState, context.Message.WorkerId);
        await allocator.EndLeaseAsync(context, context.Message.WorkerId, context.Message.LeaseId);
    }
}
