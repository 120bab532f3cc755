using DynamicWorkers.Contracts;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Instances;

/// <summary>
/// Offboarding in one transaction, holding the lock of every pool the instance uses so no worker is claimed for it
/// meanwhile: its open leases end <c>Revoked</c> (<c>InstanceRemoved</c>), its workers are deleted, its settings
/// dropped. The leases' and workers' own sagas then find them ended and ignore what still arrives for them.
/// </summary>
public sealed class RemoveInstanceConsumer(
    DynamicWorkersDbContext db,
    Allocator allocator,
    TimeProvider clock,
    ILogger<RemoveInstanceConsumer> logger)
    : IConsumer<RemoveInstance>
{
    public async Task Consume(ConsumeContext<RemoveInstance> context)
    {
        var instanceId = context.Message.InstanceId;
        if (string.IsNullOrWhiteSpace(instanceId) || instanceId.Length > LeaseRequestValidation.MaxInstanceIdLength)
        {
            throw new ArgumentException(
                $"RemoveInstance: InstanceId must be 1 to {LeaseRequestValidation.MaxInstanceIdLength} characters");
        }

        var cancellationToken = context.CancellationToken;
        var pools = await db.Set<LeaseState>().AsNoTracking()
            .Where(l => l.InstanceId == instanceId && l.EndedAt == null).Select(l => l.Pool)
            .Union(db.Set<WorkerState>().AsNoTracking()
                .Where(w => w.TrustedInstanceId == instanceId && WorkerStates.Live.Contains(w.CurrentState))
                .Select(w => w.Pool))
            .ToListAsync(cancellationToken);
        var locked = new List<PoolState>();
        foreach (var pool in pools.Order(StringComparer.Ordinal))
        {
            locked.Add(await allocator.LockPoolAsync(pool, cancellationToken));
        }

        // Read again under the locks: what they saw before may have changed.
        await allocator.BeginAsync(cancellationToken);
        var leases = await db.Set<LeaseState>().AsTracking()
            .Where(l => l.InstanceId == instanceId && l.EndedAt == null).ToListAsync(cancellationToken);
        var workers = await db.Set<WorkerState>().AsTracking()
            .Where(w => w.TrustedInstanceId == instanceId && WorkerStates.Live.Contains(w.CurrentState))
            .ToListAsync(cancellationToken);
        var reason = context.Message.Reason is { Length: > 0 } given
            ? $"instance removed: {given}"
            : "instance removed";
        foreach (var worker in workers)
        {
            await allocator.ReapAsync(context, worker, ReapReasons.InstanceRemoved, reason);
        }

        var now = clock.GetUtcNow();
        foreach (var lease in leases)
        {
            lease.CurrentState = LeaseStates.Revoked;
            lease.RevokeReason = LeaseRevocationReasons.InstanceRemoved;
            lease.EndedAt = now;
            lease.Version++;
            await context.Publish(new LeaseRevoked(lease.CorrelationId, instanceId, lease.WorkerId ?? Guid.Empty,
                LeaseRevocationReasons.InstanceRemoved));
        }

        await db.Set<InstanceLifecycle>().Where(x => x.InstanceId == instanceId).ExecuteDeleteAsync(cancellationToken);
        foreach (var pool in locked)
        {
            // Deleted workers no longer count against MaxWorkers: leases of other instances may get theirs now.
            await allocator.RebalanceAsync(context, pool);
        }

        await allocator.CommitAsync(cancellationToken);
        logger.LogWarning(
            "Instance {InstanceId} removed ({Reason}): {Leases} lease(s) revoked, {Workers} worker(s) deleted",
            instanceId, reason, leases.Count, workers.Count);

        var removed = new InstanceRemoved(instanceId, leases.Count, workers.Count);
        await context.Publish(removed);
        if (context.ResponseAddress is not null)
        {
            await context.RespondAsync(removed);
        }
    }
}
