using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Queries;

/// <summary>
/// The safety net behind the durable scheduler: a saga whose timer is overdue (by more than the grace) gets it again,
/// with its token, exactly as the scheduler would have sent it; if the real timer fires too, the saga has already moved
/// on and ignores it. Steps that normally take seconds run without a timer (trust, a lease answered at once, a worker
/// whose start was lost with its process), and so does provisioning, whose timer would mostly fire stale and re-arm:
/// once overdue the saga is told to check its deadlines. Every query here reads an index on (state, deadline) or
/// (pool, state).
/// </summary>
public sealed class SweepOverdueTimersConsumer(
    DynamicWorkersDbContext db,
    IOptionsMonitor<LifecycleOptions> lifecycle,
    TimeProvider clock,
    ILogger<SweepOverdueTimersConsumer> logger) : IConsumer<SweepOverdueTimers>
{
    public async Task Consume(ConsumeContext<SweepOverdueTimers> context)
    {
        if (context.Message.Grace <= TimeSpan.Zero)
        {
            throw new ArgumentException(
                $"SweepOverdueTimers: the grace must be more than zero, got {context.Message.Grace}");
        }

        var cancellationToken = context.CancellationToken;
        var cutoff = clock.GetUtcNow() - context.Message.Grace;
        var provisioningCutoff = cutoff - lifecycle.CurrentValue.ProvisioningTimeout;
        var trustCutoff = cutoff - lifecycle.CurrentValue.TrustTimeout;
        // A delete still not confirmed after this was lost (or its confirmation was): it is asked for again.
        var reapCutoff = cutoff - lifecycle.CurrentValue.DeprovisioningTimeout;
        var count = 0;

        var timers = await db.Set<WorkerState>().AsNoTracking()
            .Where(w => w.TimerToken != null && w.TimerDueAt < cutoff && w.CurrentState != WorkerStates.Reaping)
            .Select(w => new { w.CorrelationId, w.TimerToken }).ToListAsync(cancellationToken);
        foreach (var w in timers)
        {
            count += await Resend(context, new WorkerTimerDue(w.CorrelationId), w.TimerToken);
        }

        var stalled = await db.Set<WorkerState>().AsNoTracking()
            .Where(w => (w.CurrentState == WorkerStates.Trusting && w.TrustStartedAt < trustCutoff)
                || (w.CurrentState == WorkerStates.Provisioning && w.CreatedAt < provisioningCutoff)
                // Every other live worker keeps a timer: one without (its schedule lost with a process) gets one.
                || (w.TimerToken == null
                    && (w.CurrentState == WorkerStates.Ready || w.CurrentState == WorkerStates.Leased
                        || w.CurrentState == WorkerStates.Idle)
                    && w.CreatedAt < cutoff)
                // A timer standing past a deadline that already passed: the check that would have brought it forward
                // was lost.
                || (w.TimerToken != null && w.TimerDueAt >= cutoff && (
                    (w.CurrentState == WorkerStates.Idle && (w.IdleDeadline < cutoff || w.MaxAgeDeadline < cutoff))
                    || (w.CurrentState == WorkerStates.Leased
                        && (w.LeaseExpiresAt < cutoff || w.MaxAgeDeadline < cutoff))
                    || (w.CurrentState == WorkerStates.Ready && w.MaxAgeDeadline < cutoff))))
            .Select(w => w.CorrelationId).ToListAsync(cancellationToken);
        foreach (var workerId in stalled)
        {
            await context.Publish(new CheckWorkerDeadlines(workerId));
            count++;
        }

        var deleting = await db.Set<WorkerState>().AsNoTracking()
            .Where(w => w.CurrentState == WorkerStates.Reaping && w.ReapStartedAt < reapCutoff)
            .Select(w => new { w.CorrelationId, w.ReapReason }).ToListAsync(cancellationToken);
        foreach (var w in deleting)
        {
            // A lost command or confirmation is simply repeated.
            await context.RepeatReap(w.CorrelationId, w.ReapReason);
            count++;
        }

        var backedOff = await db.Set<PoolState>().AsNoTracking()
            .Where(p => p.BackoffUntil < cutoff).Select(p => p.Name).ToListAsync(cancellationToken);
        foreach (var pool in backedOff)
        {
            await context.Publish(new PoolBackoffEnded(pool));
            count++;
        }

        var leases = await WaitingLeases(db)
            .Select(l => new { l.CorrelationId, l.ReceivedAt, l.AllocationTimeout, l.AllocationTimeoutToken })
            .ToListAsync(cancellationToken);
        foreach (var l in leases.Where(l => l.ReceivedAt + l.AllocationTimeout < cutoff))
        {
            // A lease answered at once has no timer; one still not granted by its deadline is given up all the same.
            count += await Resend(context, new LeaseAllocationTimedOut(l.CorrelationId), l.AllocationTimeoutToken);
        }

        // A granted lease whose worker no longer serves it lost the RevokeLease of a worker that went away (at the
        // lease's max duration or the worker's max age): nothing else would ever end it, so it is revoked now. A worker
        // that began its delete within the grace is left to its own RevokeLease, which carries the true reason.
        var orphaned = await GrantsWithoutWorker(db, cutoff)
            .Select(l => new { l.CorrelationId, l.WorkerId, l.ExpiresAt }).ToListAsync(cancellationToken);
        foreach (var l in orphaned)
        {
            var reason = l.ExpiresAt < cutoff
                ? LeaseRevocationReasons.MaxLeaseDuration
                : LeaseRevocationReasons.WorkerLost;
            await context.Publish(new RevokeLease(l.CorrelationId, l.WorkerId!.Value, reason));
            count++;
        }

        if (count > 0)
        {
            logger.LogWarning("Sweep re-delivered {Count} overdue timeout(s) whose timers did not fire", count);
        }
    }

    /// <summary>
    /// The leases still waiting for a worker, through the (state, arrival) index however many have ended.
    /// </summary>
    public static IQueryable<LeaseState> WaitingLeases(DynamicWorkersDbContext db)
        => db.Set<LeaseState>().AsNoTracking().Where(l => LeaseStates.Waiting.Contains(l.CurrentState));

    /// <summary>
    /// Granted before the cutoff, and its worker neither serves it nor began its delete since: its RevokeLease was
    /// lost.
    /// </summary>
    public static IQueryable<LeaseState> GrantsWithoutWorker(DynamicWorkersDbContext db, DateTimeOffset cutoff)
        => db.Set<LeaseState>().AsNoTracking()
            .Where(l => l.CurrentState == LeaseStates.Granted && l.GrantedAt < cutoff
                && !db.Set<WorkerState>().Any(w => w.CorrelationId == l.WorkerId
                    && ((w.CurrentState == WorkerStates.Leased && w.CurrentLeaseId == l.CorrelationId)
                        || (w.CurrentState == WorkerStates.Reaping && w.ReapStartedAt >= cutoff))));

    static async Task<int> Resend<T>(ConsumeContext context, T timeout, Guid? token)
        where T : class
    {
        await context.Publish(timeout, c =>
        {
            if (token is { } t)
            {
                c.Headers.Set(MessageHeaders.SchedulingTokenId, t.ToString("N"));
            }
        });
        return 1;
    }
}
