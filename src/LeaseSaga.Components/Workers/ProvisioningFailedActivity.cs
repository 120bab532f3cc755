using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>The cloud could not create the VM: the worker is deleted and counted as a failure.</summary>
public sealed class ProvisioningFailedActivity(Allocator allocator)
    : MessageActivity<WorkerState, WorkerProvisioningFailed>
{
    protected override Task Execute(BehaviorContext<WorkerState, WorkerProvisioningFailed> context)
    {
        DwTelemetry.ProvisionFailures.Add(1, WorkerSteps.PoolTag(context.Saga));
        return allocator.FailWorkerAsync(context, $"provisioning failed: {context.Message.Reason}");
    }
}
