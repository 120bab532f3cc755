using DynamicWorkers.Contracts.Internal;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>The worker's steps as the worker machine names them in its flow.</summary>
public static class WorkerBinderExtensions
{
    public static EventActivityBinder<WorkerState, T> ArmTimer<T>(this EventActivityBinder<WorkerState, T> binder)
        where T : class
        => binder.Activity(x => x.OfInstanceType<ArmTimerActivity>());

    /// <summary>Asks for the delete again: it is idempotent, and the first may have been lost.</summary>
    public static EventActivityBinder<WorkerState, T> RepeatReap<T>(this EventActivityBinder<WorkerState, T> binder)
        where T : class
        => binder.ThenAsync(c => c.Send(WorkerStateMachine.DeprovisionQueue,
            new DeprovisionWorker(c.Saga.CorrelationId, c.Saga.ReapReason ?? ReapReasons.Failed)));
}
