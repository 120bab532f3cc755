using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;

namespace DynamicWorkers.LeaseSaga;

// Endpoint settings. Retry and the outbox come from the bus defaults (BusRegistration); here only how many messages
// run at once. Messages for the same saga that race are resolved by its version column; allocation takes rows with
// row locks, so messages about different leases and workers of one pool run side by side, in any LeaseSaga copy.

public sealed class LeaseStateDefinition : SagaDefinition<LeaseState>
{
    public LeaseStateDefinition() => ConcurrentMessageLimit = 32;
}

public sealed class WorkerStateDefinition : SagaDefinition<WorkerState>
{
    /// <summary>
    /// Workers' timers are scheduled here, also from the pool keeper and the lease saga (the exchange: sending to
    /// <c>queue:</c> would redeclare the quorum queue without its type).
    /// </summary>
    public static readonly Uri Address = new("exchange:worker-state");

    public WorkerStateDefinition()
    {
        EndpointName = "worker-state";
        ConcurrentMessageLimit = 32;
    }
}

/// <summary>Rare commands (start-up, resize, end of a backoff), each holding its pool's lock briefly.</summary>
public sealed class PoolKeeperDefinition : ConsumerDefinition<PoolKeeper>
{
    public PoolKeeperDefinition()
    {
        EndpointName = "pool-keeper";
        ConcurrentMessageLimit = 4;
    }
}
