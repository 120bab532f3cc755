using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>
/// One per VM: Provisioning → Ready → Trusting → Leased → Idle → Leased (re-use: no trust step)
/// … → Reaping → gone.
/// A lease claims a Ready or Idle worker by changing its row (see <see cref="Allocator"/>); this machine runs the
/// steps that follow and the worker's one timer, due at its earliest deadline (provisioning, max age, the lease's
/// expiry, idle timeout). A later deadline leaves the timer standing and it re-arms for the rest when it fires; a
/// timer replaced by an earlier one is ignored by its token. A worker serves one lease at a time and trusts the
/// instance of its first lease only, for its whole life.
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
        Event(() => WorkerTrusted, e => Existing(e, m => m.WorkerId));
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

        // The pool keeper saved the row as Provisioning, armed its timer and asked the Provisioner.
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

        During(Ready, OnDeadlines());

        During(Trusting,
        [
            When(WorkerTrusted, c => c.Message.InstanceId == c.Saga.TrustedInstanceId)
                .Activity(x => x.OfType<BeginLeaseActivity>())
                .PublishWorkerLeased()
                .TransitionTo(Leased)
                .ArmTimer(),
            When(WorkerTrustFailed)
                .Activity(x => x.OfType<TrustFailedActivity>())
                .TransitionTo(Reaping),
            .. OnDeadlines(),
        ]);

        During(Leased,
        [
            // Redelivered: the grant of the first delivery may have died with its process.
            When(WorkerTrusted, c => c.Message.InstanceId == c.Saga.TrustedInstanceId)
                .PublishWorkerLeased(),
            .. OnDeadlines(),
        ]);

        During(Idle, OnDeadlines());

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
            When(WorkerTrusted, c => c.Message.InstanceId == c.Saga.TrustedInstanceId).RepeatReap(),
            When(Timer.Received).RepeatReap(),
            When(CheckWorkerDeadlines).RepeatReap());

        // A confirmation for another instance breaks isolation: refused loudly; no claim ever sends one.
        DuringAny(
            When(WorkerTrusted, c => c.Message.InstanceId != c.Saga.TrustedInstanceId)
                .Then(c => _logger.LogError(
                    "Worker {WorkerId} trusts {TrustedInstanceId} and ignores a trust confirmation for {InstanceId}",
                    c.Saga.CorrelationId, c.Saga.TrustedInstanceId, c.Message.InstanceId)));

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
    public Event<WorkerTrusted> WorkerTrusted { get; private set; } = null!;
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
