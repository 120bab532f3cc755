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
/// The safety net behind the durable scheduler: a saga whose deadline passed (by more than the grace) while
/// its timer still holds a token gets that timeout again, with the token, exactly as the scheduler would have
/// sent it. If the real timer fires too, the saga has already moved on and ignores it.
/// </summary>
public sealed class SweepOverdueTimersConsumer(
    DynamicWorkersDbContext db,
    IOptionsMonitor<LifecycleOptions> lifecycle,
    TimeProvider clock,
    ILogger<SweepOverdueTimersConsumer> logger) : IConsumer<SweepOverdueTimers>
{
    public async Task Consume(ConsumeContext<SweepOverdueTimers> context)
    {
        var cutoff = clock.GetUtcNow() - context.Message.Grace;
        var provisioningCutoff = cutoff - lifecycle.CurrentValue.ProvisioningTimeout;
        var trustCutoff = cutoff - lifecycle.CurrentValue.TrustTimeout;
        // A delete still not confirmed after this was lost (or its confirmation was): it is asked for again.
        var reapCutoff = cutoff - lifecycle.CurrentValue.DeprovisioningTimeout;
        var workers = await db.Set<WorkerState>().AsNoTracking()
            .Where(w => (w.IdleTimeoutToken != null && w.IdleDeadline < cutoff)
                || (w.MaxAgeToken != null && w.MaxAgeDeadline < cutoff)
                || (w.ProvisioningTimeoutToken != null && w.CreatedAt < provisioningCutoff)
                || (w.TrustTimeoutToken != null && w.TrustStartedAt < trustCutoff)
                || (w.CurrentState == "Reaping" && w.ReapStartedAt < reapCutoff)
                || (w.CurrentState == "Retiring" && (w.IdleDeadline < reapCutoff || w.MaxAgeDeadline < reapCutoff)))
            .ToListAsync(context.CancellationToken);
        var leases = await db.Set<LeaseState>().AsNoTracking()
            .Where(l => l.AllocationTimeoutToken != null || l.CurrentState == "Allocating" || (l.MaxDurationToken != null && l.ExpiresAt < cutoff))
            .ToListAsync(context.CancellationToken);
        var pools = await db.Set<PoolState>().AsNoTracking().ToListAsync(context.CancellationToken);

        var count = 0;
        foreach (var w in workers)
        {
            if (w.IdleTimeoutToken is { } idle && w.IdleDeadline < cutoff)
            {
                count += await Resend(context, new WorkerIdleTimedOut(w.CorrelationId), idle);
            }

            if (w.MaxAgeToken is { } age && w.MaxAgeDeadline < cutoff)
            {
                count += await Resend(context, new WorkerMaxAgeReached(w.CorrelationId), age);
            }

            if (w.ProvisioningTimeoutToken is { } provisioning && w.CreatedAt < provisioningCutoff)
            {
                count += await Resend(context, new WorkerProvisioningTimedOut(w.CorrelationId), provisioning);
            }

            if (w.TrustTimeoutToken is { } trust && w.TrustStartedAt < trustCutoff)
            {
                count += await Resend(context, new WorkerTrustTimedOut(w.CorrelationId), trust);
            }

            if (w.CurrentState == "Reaping" && w.ReapStartedAt < reapCutoff)
            {
                // Deleting is idempotent: a lost command or confirmation is simply repeated.
                await context.Send(WorkerStateMachine.DeprovisionQueue, new DeprovisionWorker(w.CorrelationId, w.ReapReason ?? "failed"));
                count++;
            }
        }

        foreach (var w in workers.Where(w => w.CurrentState == "Retiring" && (w.IdleDeadline < reapCutoff || w.MaxAgeDeadline < reapCutoff)))
        {
            // The pool's answer to its retirement request never came: ask again (the pool's answer is idempotent).
            await context.Publish(new WorkerRetirementRequested(w.Pool, w.CorrelationId, w.LastLeaseId));
            count++;
        }

        foreach (var p in pools.Where(p => p.BackoffToken != null && p.BackoffUntil < cutoff))
        {
            count += await Resend(context, new PoolBackoffEnded(p.Name), p.BackoffToken!.Value);
        }

        count += await RepeatLostPoolDecisions(context, pools, provisioningCutoff);

        foreach (var l in leases)
        {
            if (LeaseStateMachine.AllocationDeadline(l) < cutoff)
            {
                if (l.AllocationTimeoutToken is { } allocation)
                {
                    count += await Resend(context, new LeaseAllocationTimedOut(l.CorrelationId), allocation);
                }
                else if (l.CurrentState == "Allocating")
                {
                    // Answered at once by the pool, so no timer was set, and still not granted: give it up all the same.
                    await context.Publish(new LeaseAllocationTimedOut(l.CorrelationId));
                    count++;
                }
            }

            if (l.MaxDurationToken is { } duration && l.ExpiresAt < cutoff)
            {
                count += await Resend(context, new LeaseMaxDurationReached(l.CorrelationId), duration);
            }
        }

        if (count > 0)
        {
            logger.LogWarning("Sweep re-delivered {Count} overdue timeout(s) whose timers did not fire", count);
        }
    }

    /// <summary>
    /// The pool's decisions that no redelivery repeats (the message that caused them finds them already counted):
    /// a worker the pool started whose <c>StartWorker</c> died with its process has no saga, so no timer; once older
    /// than a provisioning timeout the pool is told it is gone, and replaces it. A hot worker the pool retired as
    /// surplus whose approval was lost is still ready: it is approved again (a repeat is harmless).
    /// </summary>
    async Task<int> RepeatLostPoolDecisions(ConsumeContext context, List<PoolState> pools, DateTimeOffset provisioningCutoff)
    {
        var started = pools.SelectMany(p => p.Book.ProvisioningSince(provisioningCutoff).Select(id => (Pool: p.Name, WorkerId: id))).ToList();
        var retired = pools.SelectMany(p => p.Book.Retiring).ToList();
        var ids = started.Select(s => s.WorkerId).Concat(retired).ToList();
        if (ids.Count == 0)
        {
            return 0;
        }

        var states = await db.Set<WorkerState>().AsNoTracking().Where(w => ids.Contains(w.CorrelationId))
            .ToDictionaryAsync(w => w.CorrelationId, w => w.CurrentState, context.CancellationToken);
        var count = 0;
        foreach (var (pool, workerId) in started.Where(s => !states.ContainsKey(s.WorkerId)))
        {
            logger.LogWarning("Pool {Pool}: worker {WorkerId} was started but never provisioned (its StartWorker was lost); the pool forgets it", pool, workerId);
            await context.Publish(new WorkerGone(pool, workerId, Failed: false, "never started: its StartWorker was lost", RequeueLeaseId: null));
            count++;
        }

        foreach (var workerId in retired.Where(id => states.GetValueOrDefault(id) == "Ready"))
        {
            await context.Publish(new WorkerRetirementApproved(workerId));
            count++;
        }

        return count;
    }

    static async Task<int> Resend<T>(ConsumeContext context, T timeout, Guid token)
        where T : class
    {
        await context.Publish(timeout, c => c.Headers.Set(MessageHeaders.SchedulingTokenId, token.ToString("N")));
        return 1;
    }
}
