using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>
/// Within the instance's fair share of the pool, re-use first (an idle worker of the instance is granted at once), then
/// a hot worker (told to trust the instance), else the lease waits in line while the pool starts a worker for it,
/// unless the instance already has its share of the line or the line is full. Sets <see cref="LeaseState.Outcome"/>,
/// and the rejection when there is one.
/// </summary>
public sealed class AllocateLeaseActivity(
    Allocator allocator, IWorkerCloud cloud, IOptionsMonitor<LifecycleOptions> lifecycle, TimeProvider clock,
    TurnAwayWarnings turnAways, ILogger<LeaseStateMachine> logger)
    : MessageActivity<LeaseState, LeaseRequested>
{
    protected override async Task Execute(BehaviorContext<LeaseState, LeaseRequested> context)
    {
        var lease = context.Saga;
        var definition = allocator.Definition(lease.Pool);
        var cancellationToken = context.CancellationToken;
        // A re-use counts too: the cap is on the leases an instance holds, however they are served.
        var share = await allocator.InstanceShareAsync(lease.Pool, lease.InstanceId, cancellationToken);
        if (share.Open >= definition.MaxLeasesPerInstance)
        {
            Reject(lease, AllocationOutcome.InstanceAtMaxLeases, LeaseRejectionReasons.InstanceLimit,
                $"instance '{lease.InstanceId}' already has {definition.MaxLeasesPerInstance} open leases "
                + $"in pool '{lease.Pool}' (Pools:{lease.Pool}:MaxLeasesPerInstance); release one first");
            return;
        }

        var reapedUnhealthy = false;
        while (await allocator.ClaimIdleAsync(lease.Pool, lease.InstanceId, lease.ServerThumbprint, cancellationToken)
               is { } idle)
        {
            if (await IsDeadAsync(idle, cancellationToken))
            {
                // The claim skips it from now on: the next idle worker of the instance, then a hot one, then the line.
                await allocator.ReapAsync(context, idle, ReapReasons.Unhealthy,
                    "its VM is not running (checked before re-use)");
                reapedUnhealthy = true;
                continue;
            }

            var expiresAt = allocator.LeaseAgain(idle, lease.CorrelationId, share.Limits);
            await allocator.ArmTimerAsync(context, idle);

            lease.Outcome = AllocationOutcome.Reused;
            GrantLeaseActivity.Choose(lease, idle.CorrelationId, idle.Address!, idle.AgentThumbprint!, reused: true,
                expiresAt);
            await ReconcileIfShortAsync(context, reapedUnhealthy);
            return;
        }

        // Checked before the pool's lock, as the full line below: while an instance's leases wait, no hot worker is
        // left.
        if (share.Waiting >= definition.MaxWaitingPerInstance)
        {
            Reject(lease, AllocationOutcome.InstanceAtMaxWaiting, LeaseRejectionReasons.InstanceLimit,
                $"instance '{lease.InstanceId}' already has {definition.MaxWaitingPerInstance} leases waiting "
                + $"in pool '{lease.Pool}' (Pools:{lease.Pool}:MaxWaitingPerInstance) and no idle worker");
            await ReconcileIfShortAsync(context, reapedUnhealthy);
            return;
        }

        // A full line turns the lease away before it takes the pool's lock: a flood's refusals then wait on nothing.
        var maxWaiting = definition.MaxWaiting;
        if (await allocator.WaitingAsync(lease.Pool, cancellationToken) >= maxWaiting)
        {
            if (turnAways.ShouldWarn(lease.Pool, out var unreported))
            {
                logger.LogWarning(
                    "Pool {Pool}: lease {LeaseId} of {InstanceId} turned away, {MaxWaiting} leases already wait; "
                    + "{Unreported} more turned away since the previous warning "
                    + "(at most one every {IntervalSeconds} s per pool in this process)",
                    lease.Pool, lease.CorrelationId, lease.InstanceId, maxWaiting, unreported,
                    TurnAwayWarnings.Interval.TotalSeconds);
            }

            Reject(lease, AllocationOutcome.LineFull, LeaseRejectionReasons.NoCapacity,
                $"pool '{lease.Pool}' already has {maxWaiting} leases waiting (Pools:{lease.Pool}:MaxWaiting) "
                + "and no idle worker of this instance");
            await ReconcileIfShortAsync(context, reapedUnhealthy);
            return;
        }

        // Shared: leases take hot workers and join the line side by side; starting workers is the pool keeper's, alone.
        var pool = await allocator.LockPoolAsync(lease.Pool, cancellationToken, shared: true);
        if (await allocator.ClaimReadyAsync(lease.Pool, cancellationToken, pool.Image) is { } hot)
        {
            await allocator.AssignAsync(context, hot, lease);
            lease.Outcome = AllocationOutcome.Trusting;
        }
        else
        {
            lease.Waited = true;
            lease.Outcome = AllocationOutcome.Waiting;
        }

        if (await allocator.MayNeedWorkersAsync(pool, lease, cancellationToken))
        {
            await context.Publish(new ReconcilePool(lease.Pool));
        }
    }

    static void Reject(LeaseState lease, AllocationOutcome outcome, string reason, string detail)
        => (lease.Outcome, lease.RejectReason, lease.RejectDetail) = (outcome, reason, detail);

    /// <summary>
    /// Whether an idle worker's VM is known not to run. Only a worker idle longer than
    /// <c>Lifecycle:HealthCheckAfterIdle</c> is checked, so a re-use soon after a release costs nothing more. A cloud
    /// that cannot tell in time leaves it leased: an outage of the cloud's API must not delete every idle worker.
    /// </summary>
    async Task<bool> IsDeadAsync(WorkerState idle, CancellationToken cancellationToken)
    {
        var settings = lifecycle.CurrentValue;
        var idleFor = clock.GetUtcNow() - (idle.LastLeaseEndedAt ?? idle.ProvisionedAt ?? idle.CreatedAt);
        if (settings.HealthCheckAfterIdle > TimeSpan.Zero && idleFor <= settings.HealthCheckAfterIdle)
        {
            return false;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(settings.HealthCheckTimeout);
        try
        {
            var health = await cloud.CheckAsync(idle.CorrelationId, timeout.Token);
            if (health == VmHealth.NotRunning)
            {
                logger.LogWarning(
                    "Worker {WorkerId} of {Pool} (instance {InstanceId}) is idle but its VM is not running; "
                    + "it is reaped instead of leased",
                    idle.CorrelationId, idle.Pool, idle.TrustedInstanceId);
            }

            return health == VmHealth.NotRunning;
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning(e,
                "Worker {WorkerId} of {Pool} (instance {InstanceId}): its VM's health is unknown "
                + "(no answer within {Timeout}); leased anyway",
                idle.CorrelationId, idle.Pool, idle.TrustedInstanceId, settings.HealthCheckTimeout);
            return false;
        }
    }

    /// <summary>
    /// A worker reaped as unhealthy no longer counts against <c>MaxWorkers</c>: the pool keeper fills the room if a
    /// waiting lease or the hot target needs it.
    /// </summary>
    async Task ReconcileIfShortAsync(BehaviorContext<LeaseState> context, bool reapedUnhealthy)
    {
        if (reapedUnhealthy && await allocator.MayNeedWorkersAsync(context.Saga.Pool, context.CancellationToken))
        {
            await context.Publish(new ReconcilePool(context.Saga.Pool));
        }
    }
}
