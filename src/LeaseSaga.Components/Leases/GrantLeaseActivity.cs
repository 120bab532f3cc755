using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Queries;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>Grants the worker chosen (<see cref="Choose"/>), records how long the lease waited, answers.</summary>
public sealed class GrantLeaseActivity(TimeProvider clock, PoolHistory history, ILogger<LeaseStateMachine> logger)
    : InstanceActivity<LeaseState>
{
    public static void Choose(
        LeaseState lease, Guid workerId, string address, string agentThumbprint, bool reused, DateTimeOffset expiresAt)
    {
        lease.WorkerId = workerId;
        lease.WorkerAddress = address;
        lease.WorkerThumbprint = agentThumbprint;
        lease.Reused = reused;
        lease.ExpiresAt = expiresAt;
    }

    public static void Choose(LeaseState lease, WorkerLeased leased)
        => Choose(lease, leased.WorkerId, leased.Address, leased.AgentThumbprint, leased.Reused, leased.ExpiresAt);

    protected override Task Execute(BehaviorContext<LeaseState> context)
    {
        var lease = context.Saga;
        // Whole milliseconds: a repeat answers from the stored row, so it must be the very grant the first answer was.
        var now = Allocator.WholeMilliseconds(clock.GetUtcNow());
        lease.GrantedAt = now;
        var path = lease.Reused ? LeaseWaitPaths.Reuse : lease.Waited ? LeaseWaitPaths.Cold : LeaseWaitPaths.Hot;
        DwTelemetry.LeaseWait.Record((now - lease.ReceivedAt).TotalSeconds,
            new("pool", lease.Pool), new(LeaseWaitPaths.Tag, path));
        history.RecordLeaseWait(lease.Pool, path, now - lease.ReceivedAt);
        logger.LogInformation(
            "Lease {LeaseId} of {InstanceId} granted worker {WorkerId} ({Path}, {Wait:0.###} s)",
            lease.CorrelationId, lease.InstanceId, lease.WorkerId, path, (now - lease.ReceivedAt).TotalSeconds);
        return LeaseAnswers.AnswerClient(context, LeaseAnswers.GrantOf(lease));
    }
}
