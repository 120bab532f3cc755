using DynamicWorkers.Contracts;
using DynamicWorkers.LeaseSaga.Configuration;
using MassTransit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>
/// Records a new request within the column limits, then either chooses its rejection (an invalid request) or takes the
/// pool's allocation timeout as it is on arrival.
/// </summary>
public sealed class RecordLeaseRequestActivity(
    IOptionsMonitor<PoolsOptions> pools, TimeProvider clock, ILogger<LeaseStateMachine> logger)
    : MessageActivity<LeaseState, LeaseRequested>
{
    protected override Task Execute(BehaviorContext<LeaseState, LeaseRequested> context)
    {
        var request = context.Message;
        var lease = context.Saga;
        lease.InstanceId = LeaseRequestValidation.Clip(request.InstanceId, LeaseRequestValidation.MaxInstanceIdLength);
        lease.ServerThumbprint =
            LeaseRequestValidation.Clip(request.ServerThumbprint, LeaseRequestValidation.MaxThumbprintLength);
        lease.Pool = LeaseRequestValidation.Clip(request.Pool, LeaseRequestValidation.MaxPoolLength).ToLowerInvariant();
        lease.TaskId = request.TaskId is null
            ? null
            : LeaseRequestValidation.Clip(request.TaskId, LeaseRequestValidation.MaxTaskIdLength);
        lease.RequestedAt = request.RequestedAt;
        lease.ReceivedAt = clock.GetUtcNow();
        lease.ResponseAddress = context.ResponseAddress;
        lease.RequestId = context.RequestId;

        var definitions = pools.CurrentValue.Pools;
        if (LeaseRequestValidation.Check(request, definitions.Keys) is { } rejection)
        {
            (lease.RejectReason, lease.RejectDetail) = rejection;
            return Task.CompletedTask;
        }

        logger.LogInformation(
            "Lease {LeaseId} requested by {InstanceId} in {Pool} (task {TaskId})",
            lease.CorrelationId, lease.InstanceId, lease.Pool, lease.TaskId);
        lease.AllocationTimeout = definitions[lease.Pool].AllocationTimeout;
        return Task.CompletedTask;
    }
}
