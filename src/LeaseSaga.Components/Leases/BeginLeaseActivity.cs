using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>
/// The lease's worker trusts its instance: it serves the lease from now on, and the lease is granted
/// (<see cref="AllocationOutcome.Trusted"/>). A lease that ended meanwhile leaves it idle for its instance; a worker
/// that no longer trusts for this lease changes nothing, and one being deleted is asked for its delete again.
/// </summary>
public sealed class BeginLeaseActivity(Allocator allocator, ILogger<LeaseStateMachine> logger)
    : MessageActivity<LeaseState, WorkerTrusted>
{
    protected override async Task Execute(BehaviorContext<LeaseState, WorkerTrusted> context)
    {
        var lease = context.Saga;
        var trusted = context.Message;
        var (worker, limits) = await allocator.WorkerAsync(trusted.WorkerId, context.CancellationToken);
        if (worker?.CurrentState == WorkerStates.Reaping)
        {
            // Its delete may have been lost with the process that gave the trust up.
            await context.RepeatReap(worker.CorrelationId, worker.ReapReason);
            return;
        }

        if (worker is null || worker.CurrentState != WorkerStates.Trusting
            || worker.CurrentLeaseId != lease.CorrelationId)
        {
            logger.LogInformation(
                "Lease {LeaseId}: worker {WorkerId} no longer trusts for it; its confirmation is ignored",
                lease.CorrelationId, trusted.WorkerId);
            return;
        }

        var expiresAt = allocator.BeginLease(worker, trusted.AgentThumbprint, limits);
        if (!LeaseStates.Waiting.Contains(lease.CurrentState))
        {
            logger.LogInformation(
                "Lease {LeaseId} of {InstanceId} in {State} does not take worker {WorkerId}; it goes idle",
                lease.CorrelationId, lease.InstanceId, lease.CurrentState, worker.CorrelationId);
            await allocator.EndLeaseAsync(context, worker.CorrelationId, lease.CorrelationId);
            return;
        }

        await allocator.ArmTimerAsync(context, worker);
        GrantLeaseActivity.Choose(lease, worker.CorrelationId, worker.Address!, trusted.AgentThumbprint, reused: false,
            expiresAt);
        lease.Outcome = AllocationOutcome.Trusted;
    }
}
