using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>
/// One per VM: Provisioning → Ready → Trusting → Leased → Idle → Leased (re-use: no trust step)
/// … → Reaping → gone.
/// A lease claims a Ready or Idle worker, and starts and ends its leases, by changing its row (see
/// <see cref="Allocator"/>); this machine runs its start, its failures, its delete and its one timer, due at its
/// earliest deadline (max age, the lease's expiry, idle timeout; the sweep enforces provisioning's and trust's). A
/// later deadline leaves the timer standing and it re-arms for the rest when it fires; a timer replaced by an earlier
/// one is ignored by its token. A worker serves one lease at a time and trusts the instance of its first lease only,
/// for its whole life.
/// </summary>
public sealed class WorkerStateMachine : MassTransitStateMachine<WorkerState>
{
    internal static readonly Uri DeprovisionQueue = CloudQueues.Address(CloudQueues.DeprovisionWorker);

    readonly ILogger<WorkerStateMachine> _logger;

    public WorkerStateMachine(ILogger<WorkerStateMachine> logger)
    {
        _logger = logger;

        InstanceState(x => x.CurrentState);
        Event(() => WorkerProvisioned, e => Existing(e, m => m.WorkerId));
        Event(() => WorkerProvisioningFailed, e => Existing(e, m => m.WorkerId));
        Event(() => WorkerTrustFailed, e => Existing(e, m => m.WorkerId));
        Event(() => CheckWorkerDeadlines, e => Existing(e, m => m.WorkerId));
        Event(() => WorkerDeprovisioned, e => Existing(e, m => m.WorkerId));
        Schedule(() => Timer, x => x.TimerToken, s => s.Received = e => e.CorrelateById(m => m.Message.WorkerId));
        OnUnhandledEvent(c =>
        {
            _logger.LogInformation("Worker {WorkerId} in {State} ignores {Event}",
                c.Saga.CorrelationId, c.Saga.CurrentState, c.Event.Name);
            return Task.CompletedTask;
        });

        // The pool keeper saved the row as Provisioning and asked the Provisioner; the first timer is armed when ready.
        During(Provisioning,
        [
            When(WorkerProvisioned)
                .Activity(x => x.OfType<BecomeReadyActivity>())
                .IfElse(c => c.Saga.CurrentState == WorkerStates.Reaping,
                    surplus => surplus.TransitionTo(Reaping),
                    kept => kept.IfElse(c => c.Saga.CurrentLeaseId is null,
                        ready => ready.Then(c => _logger.LogStep(c.Saga, "ready")).TransitionTo(Ready),
                        taken => taken.TransitionTo(Trusting)))
                .ArmTimer(),
            When(WorkerProvisioningFailed)
                .Activity(x => x.OfType<ProvisioningFailedActivity>())
                .TransitionTo(Reaping),
            .. OnDeadlines(),
        ]);

        // The lease it trusts for takes its WorkerTrusted, and makes it Leased.
        During(Trusting,
        [
            When(WorkerTrustFailed)
                .Activity(x => x.OfType<TrustFailedActivity>())
                .TransitionTo(Reaping),
            .. OnDeadlines(),
        ]);

        During(Ready, Leased, Idle, OnDeadlines());

        During(Reaping,
            When(WorkerDeprovisioned)
                .Then(c =>
                {
                    DwTelemetry.WorkersReaped.Add(1,
                        new KeyValuePair<string, object?>("reason", c.Saga.ReapReason ?? ReapReasons.Failed));
                    _logger.LogStep(c.Saga, "deprovisioned");
                })
                .Finalize(),
            // Anything that may have led here repeats the delete; a timer or check may be all that is left.
            When(WorkerProvisioningFailed).RepeatReap(),
            When(WorkerTrustFailed).RepeatReap(),
            When(Timer.Received).RepeatReap(),
            When(CheckWorkerDeadlines).RepeatReap());

        SetCompletedWhenFinalized();
    }

    public State Provisioning { get; private set; } = null!;
    public State Ready { get; private set; } = null!;
    public State Trusting { get; private set; } = null!;
    public State Leased { get; private set; } = null!;
    public State Idle { get; private set; } = null!;
    public State Reaping { get; private set; } = null!;

    public Event<WorkerProvisioned> WorkerProvisioned { get; private set; } = null!;
    public Event<WorkerProvisioningFailed> WorkerProvisioningFailed { get; private set; } = null!;
    public Event<WorkerTrustFailed> WorkerTrustFailed { get; private set; } = null!;
    public Event<CheckWorkerDeadlines> CheckWorkerDeadlines { get; private set; } = null!;
    public Event<WorkerDeprovisioned> WorkerDeprovisioned { get; private set; } = null!;

    public Schedule<WorkerState, WorkerTimerDue> Timer { get; private set; } = null!;

    /// <summary>The timer, or a check from a lease or the sweep: a passed deadline starts the delete.</summary>
    EventActivities<WorkerState>[] OnDeadlines()
        => [OnDeadline(When(Timer.Received)), OnDeadline(When(CheckWorkerDeadlines))];

    EventActivityBinder<WorkerState, T> OnDeadline<T>(EventActivityBinder<WorkerState, T> due)
        where T : class
        => due
            .Activity(x => x.OfInstanceType<WorkerDeadlinesActivity>())
            .If(c => c.Saga.CurrentState == WorkerStates.Reaping, passed => passed.TransitionTo(Reaping));

    /// <summary>Messages about a worker that is already gone are dropped, not faulted.</summary>
    static void Existing<T>(IEventCorrelationConfigurator<WorkerState, T> e, Func<T, Guid> id)
        where T : class
    {
        e.CorrelateById(m => id(m.Message));
        e.OnMissingInstance(m => m.Discard());
    }
}
