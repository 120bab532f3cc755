using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>Arms the worker's one timer for its earliest deadline (<see cref="WorkerSteps.ArmTimerAsync"/>).</summary>
public sealed class ArmTimerActivity(Allocator allocator) : InstanceActivity<WorkerState>
{
    protected override Task Execute(BehaviorContext<WorkerState> context) => allocator.ArmTimerAsync(context);
}
