using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>
/// What the timer (or a check from a lease or the sweep) does to a live worker: act on a deadline that passed, which
/// starts deleting it, else arm the timer for the earliest one left (a timer that stood through a later deadline
/// re-arms for the rest).
/// </summary>
public sealed class WorkerDeadlinesActivity(
    Allocator allocator, IOptionsMonitor<LifecycleOptions> lifecycle, TimeProvider clock)
    : InstanceActivity<WorkerState>
{
    protected override async Task Execute(BehaviorContext<WorkerState> context)
    {
        var worker = context.Saga;
        var settings = lifecycle.CurrentValue;
        switch (worker.CurrentState)
        {
            case WorkerStates.Provisioning when StepOverdue(worker, settings):
                DwTelemetry.ProvisionFailures.Add(1, WorkerSteps.PoolTag(worker));
                await allocator.FailWorkerAsync(context, "provisioning timed out");
                break;
            case WorkerStates.Ready when DeadlinePassed(worker):
                await allocator.ReapWorkerAsync(context, ReapReasons.MaxAge, "max age reached while hot");
                break;
            case WorkerStates.Trusting when StepOverdue(worker, settings):
                DwTelemetry.TrustFailures.Add(1, WorkerSteps.PoolTag(worker));
                await allocator.FailWorkerAsync(context, "trust timed out");
                break;
            case WorkerStates.Leased when Passed(worker.LeaseExpiresAt):
                await context.Publish(new RevokeLease(worker.CurrentLeaseId!.Value, worker.CorrelationId,
                    LeaseRevocationReasons.MaxLeaseDuration));
                await allocator.ReapWorkerAsync(context, ReapReasons.MaxLease, "the lease reached its max duration");
                break;
            case WorkerStates.Leased when Passed(worker.MaxAgeDeadline):
                await context.Publish(new RevokeLease(worker.CurrentLeaseId!.Value, worker.CorrelationId,
                    LeaseRevocationReasons.MaxWorkerAge));
                await allocator.ReapWorkerAsync(context, ReapReasons.MaxAge, "max worker age reached while leased");
                break;
            case WorkerStates.Idle when Passed(worker.MaxAgeDeadline):
                await allocator.ReapWorkerAsync(context, ReapReasons.MaxAge, "max age reached while idle");
                break;
            case WorkerStates.Idle when Passed(worker.IdleDeadline):
                await allocator.ReapWorkerAsync(context, ReapReasons.Idle, "idle timeout");
                break;
        }

        // Also after a deadline acted: a fired timer's token is spent either way.
        if (!DeadlinePassed(worker) && !StepOverdue(worker, settings))
        {
            await allocator.ArmTimerAsync(context);
        }
    }

    bool DeadlinePassed(WorkerState worker) => Passed(Allocator.EarliestDeadline(worker));

    /// <summary>Provisioning and trust have no timer of their own: the sweep asks for a check once overdue.</summary>
    bool StepOverdue(WorkerState worker, LifecycleOptions settings) => worker.CurrentState switch
    {
        WorkerStates.Provisioning => Passed(worker.CreatedAt + settings.ProvisioningTimeout),
        WorkerStates.Trusting => Passed(worker.TrustStartedAt + settings.TrustTimeout),
        _ => false,
    };

    bool Passed(DateTimeOffset? deadline) => deadline is { } d && d <= clock.GetUtcNow();
}
