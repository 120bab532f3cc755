using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>
/// One per <c>LeaseId</c>: validate, take a worker (an idle one of the instance, else a hot one, else wait in line at
/// most the pool's allocation timeout), grant, then end on release or when the worker revokes it (max lease duration,
/// max worker age). Every request gets exactly one outcome; a repeat with the same id gets the same one again and
/// re-runs nothing; the same id from another instance gets <c>LeaseIdConflict</c> and changes nothing.
/// </summary>
public sealed class LeaseStateMachine : MassTransitStateMachine<LeaseState>
{
    readonly TimeProvider _clock;
    readonly ILogger<LeaseStateMachine> _logger;

    public LeaseStateMachine(TimeProvider clock, ILogger<LeaseStateMachine> logger)
    {
        _clock = clock;
        _logger = logger;

        InstanceState(x => x.CurrentState);
        Event(() => LeaseRequested, e => e.CorrelateById(m => m.Message.LeaseId));
        // A release can overtake its own request (both in the queue at once): try again a little later
        // before calling the lease unknown.
        Event(() => LeaseReleased, e =>
        {
            e.CorrelateById(m => m.Message.LeaseId);
            e.OnMissingInstance(m => m.Redeliver(r =>
            {
                r.Intervals(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(15));
                r.OnRedeliveryLimitReached(n => n.ExecuteAsync(c =>
                {
                    _logger.LogInformation("Ignored release of an unknown lease {LeaseId} from {InstanceId}",
                        c.Message.LeaseId, c.Message.InstanceId);
                    return Task.CompletedTask;
                }));
            }));
        });
        Event(() => LeaseQueued, e => Existing(e, m => m.LeaseId, "queued notice for an unknown lease"));
        Event(() => WorkerTrusted, e => Existing(e, m => m.LeaseId, "trusted worker for an unknown lease"));
        Event(() => WorkerLeased, e => Existing(e, m => m.LeaseId, "worker for an unknown lease"));
        Event(() => RevokeLease, e => Existing(e, m => m.LeaseId, "revocation of an unknown lease"));
        Event(() => RejectWaitingLease, e => Existing(e, m => m.LeaseId, "rejection of an unknown waiting lease"));
        Schedule(() => AllocationTimeout, x => x.AllocationTimeoutToken,
            s => s.Received = e => e.CorrelateById(m => m.Message.LeaseId));
        OnUnhandledEvent(c =>
        {
            _logger.LogInformation("Lease {LeaseId} in {State} ignores {Event}",
                c.Saga.CorrelationId, c.Saga.CurrentState, c.Event.Name);
            return Task.CompletedTask;
        });

        Initially(
            When(LeaseRequested)
                .Activity(x => x.OfType<RecordLeaseRequestActivity>())
                .If(c => c.Saga.RejectReason is null, valid => valid.Activity(x => x.OfType<AllocateLeaseActivity>()))
                .If(c => c.Saga.Outcome == AllocationOutcome.Reused, reused => reused
                    .Activity(x => x.OfInstanceType<GrantLeaseActivity>())
                    .TransitionTo(Granted))
                .If(c => c.Saga.Outcome == AllocationOutcome.Trusting, trusting => trusting.TransitionTo(Allocating))
                // The allocation timer runs only while the lease waits in line: most leases are served at once,
                // and a timer set and cancelled within milliseconds is two trips through the scheduler for nothing.
                .If(c => c.Saga.Outcome == AllocationOutcome.Waiting, waiting => ScheduleAllocationTimeout(waiting)
                    .TransitionTo(WaitingForWorker))
                .If(c => c.Saga.RejectReason is not null, rejected => rejected
                    .Activity(x => x.OfInstanceType<RejectLeaseActivity>())
                    .TransitionTo(Rejected)));

        During(Allocating, WaitingForWorker,
            // Its worker failed: back in line by its arrival time, with the deadline it got on arrival.
            When(LeaseQueued)
                .Then(c => c.Saga.Waited = true)
                .If(c => c.Saga.AllocationTimeoutToken is null, unarmed => ScheduleAllocationTimeout(unarmed))
                .TransitionTo(WaitingForWorker),
            When(WorkerTrusted, SameInstance)
                .Activity(x => x.OfType<BeginLeaseActivity>())
                .If(c => c.Saga.Outcome == AllocationOutcome.Trusted, Grant),
            // A worker that ended a lease of the same instance goes straight to this one.
            Grant(When(WorkerLeased).Then(c => GrantLeaseActivity.Choose(c.Saga, c.Message))),
            When(LeaseReleased, c => c.Message.InstanceId == c.Saga.InstanceId)
                .Then(c =>
                {
                    c.Saga.ReleaseRequested = true;
                    _logger.LogInformation("Lease {LeaseId} released before it was granted; it ends once granted",
                        c.Saga.CorrelationId);
                }),
            // Out of line by its state; a worker already trusting for it goes idle for the instance when it comes.
            GiveUp(When(AllocationTimeout.Received)),
            // From the sweep: the deadline of a lease with no timer passed (served at once, its worker never came).
            GiveUp(When(AllocationTimeout.AnyReceived,
                c => c.GetSchedulingTokenId() is null && c.Saga.AllocationTimeoutToken is null)),
            // Its pool was removed: a lease still in line ends now; one whose worker trusts is granted as usual.
            When(RejectWaitingLease, c => c.Saga.WorkerId is null)
                .Unschedule(AllocationTimeout)
                .Then(c => (c.Saga.RejectReason, c.Saga.RejectDetail) = (c.Message.Reason, c.Message.Detail))
                .Activity(x => x.OfInstanceType<RejectLeaseActivity>())
                .TransitionTo(Rejected));

        During(Granted,
            EndLease(When(LeaseReleased, c => c.Message.InstanceId == c.Saga.InstanceId)),
            // Redelivered: the process that granted may have died after saving and before publishing the grant.
            When(WorkerTrusted, c => SameInstance(c) && c.Message.WorkerId == c.Saga.WorkerId)
                .AnswerGrantAgain(),
            When(WorkerTrusted, c => SameInstance(c) && c.Message.WorkerId != c.Saga.WorkerId)
                .Activity(x => x.OfType<BeginLeaseActivity>()),
            When(WorkerLeased, c => c.Message.WorkerId == c.Saga.WorkerId)
                .AnswerGrantAgain(),
            When(WorkerLeased, c => c.Message.WorkerId != c.Saga.WorkerId)
                .Activity(x => x.OfType<DeclineWorkerActivity>()),
            When(RevokeLease, c => c.Message.WorkerId == c.Saga.WorkerId)
                .Activity(x => x.OfType<RevokeLeaseActivity>())
                .TransitionTo(Revoked));

        // A worker that arrives after the lease ended goes idle for its instance, unused.
        During(Released, Rejected, Revoked,
            When(WorkerTrusted, SameInstance).Activity(x => x.OfType<BeginLeaseActivity>()));

        During(Released,
            When(WorkerLeased).Activity(x => x.OfType<DeclineWorkerActivity>()));

        During(Rejected,
            When(WorkerLeased).Activity(x => x.OfType<DeclineWorkerActivity>()),
            // Redelivered: the rejection was saved but its answer may never have been published (the broker went away
            // in between). The timer's token is spent, so only AnyReceived still sees it; the same answer goes out
            // again, which a repeat of the request would also get.
            When(AllocationTimeout.AnyReceived).AnswerRejectionAgain());

        // Redelivered: a revocation whose answer may have died with the process that saved it is published again; so
        // is it for the instance's release, since a release of a revoked lease means the instance was never told.
        During(Revoked,
            When(WorkerLeased).Activity(x => x.OfType<DeclineWorkerActivity>()),
            When(RevokeLease, c => c.Message.WorkerId == c.Saga.WorkerId).PublishRevocationAgain(),
            When(LeaseReleased, c => c.Message.InstanceId == c.Saga.InstanceId).PublishRevocationAgain());

        DuringAny(
            // A repeat of a known lease id.
            When(LeaseRequested, c => c.Message.InstanceId != c.Saga.InstanceId)
                .AnswerLeaseIdConflict(),
            When(LeaseRequested, c => c.Message.InstanceId == c.Saga.InstanceId)
                .AnswerAgain(),
            When(LeaseReleased, c => c.Message.InstanceId != c.Saga.InstanceId)
                .Then(c => _logger.LogWarning(
                    "Lease {LeaseId} of {InstanceId}: release from {OtherInstanceId} ignored (not its lease)",
                    c.Saga.CorrelationId, c.Saga.InstanceId, c.Message.InstanceId)),
            // A confirmation for another instance breaks isolation: refused loudly; no lease ever asks for one.
            When(WorkerTrusted, c => !SameInstance(c))
                .Then(c => _logger.LogError(
                    "Lease {LeaseId} of {InstanceId} ignores worker {WorkerId}'s trust confirmation for "
                    + "{OtherInstanceId}",
                    c.Saga.CorrelationId, c.Saga.InstanceId, c.Message.WorkerId, c.Message.InstanceId)));
    }

    public State Allocating { get; private set; } = null!;
    public State WaitingForWorker { get; private set; } = null!;
    public State Granted { get; private set; } = null!;
    public State Released { get; private set; } = null!;
    public State Revoked { get; private set; } = null!;
    public State Rejected { get; private set; } = null!;

    public Event<LeaseRequested> LeaseRequested { get; private set; } = null!;
    public Event<LeaseReleased> LeaseReleased { get; private set; } = null!;
    public Event<LeaseQueued> LeaseQueued { get; private set; } = null!;
    public Event<WorkerTrusted> WorkerTrusted { get; private set; } = null!;
    public Event<WorkerLeased> WorkerLeased { get; private set; } = null!;
    public Event<RevokeLease> RevokeLease { get; private set; } = null!;
    public Event<RejectWaitingLease> RejectWaitingLease { get; private set; } = null!;

    public Schedule<LeaseState, LeaseAllocationTimedOut> AllocationTimeout { get; private set; } = null!;

    /// <summary>When a lease still without a worker gets <c>NoCapacity</c>: its timeout after arrival.</summary>
    public static DateTimeOffset AllocationDeadline(LeaseState lease) => lease.ReceivedAt + lease.AllocationTimeout;

    EventActivityBinder<LeaseState, T> ScheduleAllocationTimeout<T>(EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.Schedule(AllocationTimeout, c => new LeaseAllocationTimedOut(c.Saga.CorrelationId),
            c => AllocationDeadline(c.Saga) - _clock.GetUtcNow());

    /// <summary>The deadline passed: the lease is granted the worker that already serves it, else rejected.</summary>
    EventActivityBinder<LeaseState, LeaseAllocationTimedOut> GiveUp(
        EventActivityBinder<LeaseState, LeaseAllocationTimedOut> due)
        => due
            .Activity(x => x.OfType<GiveUpLeaseActivity>())
            .IfElse(c => c.Saga.RejectReason is null,
                served => served
                    .Activity(x => x.OfInstanceType<GrantLeaseActivity>())
                    .TransitionTo(Granted)
                    .If(c => c.Saga.ReleaseRequested, EndLease),
                unserved => unserved
                    .Activity(x => x.OfInstanceType<RejectLeaseActivity>())
                    .TransitionTo(Rejected));

    /// <summary>Its worker serves it: granted, and ended at once if the instance released it meanwhile.</summary>
    EventActivityBinder<LeaseState, T> Grant<T>(EventActivityBinder<LeaseState, T> served)
        where T : class
        => served
            .Unschedule(AllocationTimeout)
            .Activity(x => x.OfInstanceType<GrantLeaseActivity>())
            .TransitionTo(Granted)
            .If(c => c.Saga.ReleaseRequested, EndLease);

    static bool SameInstance(BehaviorContext<LeaseState, WorkerTrusted> c) => c.Message.InstanceId == c.Saga.InstanceId;

    /// <summary>The instance released the lease: its worker goes idle, or to a next lease of its instance.</summary>
    EventActivityBinder<LeaseState, T> EndLease<T>(EventActivityBinder<LeaseState, T> released)
        where T : class
        => released
            .Activity(x => x.OfInstanceType<EndLeaseActivity>())
            .TransitionTo(Released);

    void Existing<T>(IEventCorrelationConfigurator<LeaseState, T> e, Func<T, Guid> id, string what)
        where T : class
    {
        e.CorrelateById(m => id(m.Message));
        e.OnMissingInstance(m => m.ExecuteAsync(c =>
        {
            _logger.LogInformation("Ignored {What}: lease {LeaseId}", what, id(c.Message));
            return Task.CompletedTask;
        }));
    }
}
