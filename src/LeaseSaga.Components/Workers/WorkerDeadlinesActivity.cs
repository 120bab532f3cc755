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
            case WorkerStates.Provisioning when DeadlinePassed(worker, settings):
                DwTelemetry.ProvisionFailures.Add(1, WorkerSteps.PoolTag(worker));
                await allocator.FailWorkerAsync(context, "provisioning timed out");
                break;
            case WorkerStates.Ready when DeadlinePassed(worker, settings):
                await allocator.ReapWorkerAsync(context, ReapReasons.MaxAge, "max age reached while hot");
                break;
            // Trust has no timer of its own (it takes seconds): the sweep asks for a check once it is overdue.
            case WorkerStates.Trusting when TrustOverdue(worker, settings):
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
        if (!DeadlinePassed(worker, settings) && !TrustOverdue(worker, settings))
        {
            await allocator.ArmTimerAsync(context);
        }
    }

    /// <summary>Trust's deadline is the sweep's (<see cref="TrustOverdue"/>); any other is the timer's.</summary>
    bool DeadlinePassed(WorkerState worker, LifecycleOptions settings)
        => worker.CurrentState != WorkerStates.Trusting
            && Passed(Allocator.EarliestDeadline(worker, settings.ProvisioningTimeout));

    bool TrustOverdue(WorkerState worker, LifecycleOptions settings)
        => worker.CurrentState == WorkerStates.Trusting && Passed(worker.TrustStartedAt + settings.TrustTimeout);

    bool Passed(DateTimeOffset? deadline) => deadline is { } d && d <= clock.GetUtcNow();
}
