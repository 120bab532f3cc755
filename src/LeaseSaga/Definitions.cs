using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;

namespace DynamicWorkers.LeaseSaga;

// Endpoint settings per saga. Retry and the outbox come from the bus defaults (BusRegistration); here only
// how many messages run at once. Messages for the same saga that race are resolved by its version column.

public sealed class LeaseStateDefinition : SagaDefinition<LeaseState>
{
    public LeaseStateDefinition() => ConcurrentMessageLimit = 32;
}

public sealed class WorkerStateDefinition : SagaDefinition<WorkerState>
{
    public WorkerStateDefinition() => ConcurrentMessageLimit = 32;
}

/// <summary>
/// Few pools, many messages each: they take turns through the pool saga's gate (SagaGate, one decides at a time per
/// process, which avoids pointless version conflicts), and while others wait their decisions are saved together, so the
/// more are in flight, the fewer writes: up to 32, whose publishes also overlap the next decisions.
/// </summary>
public sealed class PoolStateDefinition : SagaDefinition<PoolState>
{
    public PoolStateDefinition() => ConcurrentMessageLimit = 32;
}
