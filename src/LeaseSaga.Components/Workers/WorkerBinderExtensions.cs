using DynamicWorkers.Contracts.Internal;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>The worker's steps as the worker machine names them in its flow.</summary>
public static class WorkerBinderExtensions
{
    public static EventActivityBinder<WorkerState, T> ArmTimer<T>(this EventActivityBinder<WorkerState, T> binder)
        where T : class
        => binder.Activity(x => x.OfInstanceType<ArmTimerActivity>());

    public static EventActivityBinder<WorkerState, T> RepeatReap<T>(this EventActivityBinder<WorkerState, T> binder)
        where T : class
        => binder.ThenAsync(c => c.RepeatReap(c.Saga.CorrelationId, c.Saga.ReapReason));

    /// <summary>Asks for a worker's delete again: it is idempotent, and the first may have been lost.</summary>
    public static Task RepeatReap(this ConsumeContext context, Guid workerId, string? reapReason)
        => context.Send(WorkerStateMachine.DeprovisionQueue,
            new DeprovisionWorker(workerId, reapReason ?? ReapReasons.Failed));
}
