using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>Its agent would not trust the instance: the worker is deleted and its lease goes back in line.</summary>
public sealed class TrustFailedActivity(Allocator allocator) : MessageActivity<WorkerState, WorkerTrustFailed>
{
    protected override Task Execute(BehaviorContext<WorkerState, WorkerTrustFailed> context)
    {
        DwTelemetry.TrustFailures.Add(1, WorkerSteps.PoolTag(context.Saga));
        return allocator.FailWorkerAsync(context, $"trust failed: {context.Message.Reason}");
    }
}
