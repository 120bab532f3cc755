using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>Arms the worker's one timer for its earliest deadline (<see cref="WorkerSteps.ArmTimerAsync"/>).</summary>
public sealed class ArmTimerActivity(
    Allocator allocator, IOptionsMonitor<LifecycleOptions> lifecycle, TimeProvider clock)
    : InstanceActivity<WorkerState>
{
    protected override Task Execute(BehaviorContext<WorkerState> context)
        => allocator.ArmTimerAsync(context, lifecycle.CurrentValue, clock);
}
