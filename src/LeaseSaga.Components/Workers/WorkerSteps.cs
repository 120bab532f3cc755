using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>What several of the worker's activities do: delete it, and arm its one timer.</summary>
public static class WorkerSteps
{
    /// <summary>
    /// Failed to start or to trust: deleted, its lease (if any) back in line, and the failure counted toward the
    /// pool's backoff.
    /// </summary>
    public static async Task FailWorkerAsync(
        this Allocator allocator, BehaviorContext<WorkerState> context, string detail)
    {
        var worker = context.Saga;
        var pool = await allocator.LockPoolAsync(worker.Pool, context.CancellationToken);
        if (worker.CurrentLeaseId is { } leaseId)
        {
            await allocator.RequeueAsync(context, leaseId, worker.CorrelationId);
        }

        await allocator.RecordFailureAsync(context, pool);
        await allocator.ReapAsync(context, worker, ReapReasons.Failed, detail);
        await allocator.RebalanceAsync(context, pool);
    }

    /// <summary>Deleted for a deadline: the pool replaces it if it is short of workers now.</summary>
    public static async Task ReapWorkerAsync(
        this Allocator allocator, BehaviorContext<WorkerState> context, string reason, string detail)
    {
        var pool = await allocator.LockPoolAsync(context.Saga.Pool, context.CancellationToken);
        await allocator.ReapAsync(context, context.Saga, reason, detail);
        await allocator.RebalanceAsync(context, pool);
    }

    /// <summary>Arms the worker's one timer (<see cref="Allocator.ArmTimerAsync"/>); a timer that fired is spent.</summary>
    public static Task ArmTimerAsync(this Allocator allocator, BehaviorContext<WorkerState> context)
    {
        if (context.GetSchedulingTokenId() is { } fired && fired == context.Saga.TimerToken)
        {
            context.Saga.TimerToken = null;
        }

        return allocator.ArmTimerAsync(context, context.Saga);
    }

    public static KeyValuePair<string, object?> PoolTag(WorkerState worker) => new("pool", worker.Pool);

    public static void LogStep(this ILogger logger, WorkerState worker, string what)
        => logger.LogInformation(
            "Worker {WorkerId} of {Pool} {What} (instance {InstanceId}, lease {LeaseId})",
            worker.CorrelationId, worker.Pool, what, worker.TrustedInstanceId, worker.CurrentLeaseId);
}
