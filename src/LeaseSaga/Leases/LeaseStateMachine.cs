using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Instances;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>
/// One per <c>LeaseId</c>: validate, ask the pool for a worker, wait (at most the pool's allocation timeout),
/// grant, then end on release, max lease duration or the worker's max age. Every request gets exactly one
/// outcome; a repeat with the same id gets the same one again and re-runs nothing; the same id from another
/// instance gets <c>LeaseIdConflict</c> and changes nothing.
/// </summary>
public sealed class LeaseStateMachine : MassTransitStateMachine<LeaseState>
{
    readonly IOptionsMonitor<PoolsOptions> _pools;
    readonly TimeProvider _clock;
    readonly ILogger<LeaseStateMachine> _logger;

    public LeaseStateMachine(IOptionsMonitor<PoolsOptions> pools, TimeProvider clock, ILogger<LeaseStateMachine> logger)
    {
        _pools = pools;
        _clock = clock;
        _logger = logger;

        InstanceState(x => x.CurrentState);
        Event(() => Requested, e => e.CorrelateById(m => m.Message.LeaseId));
        // A release can overtake its own request (both in the queue at once): try again a little later
        // before calling the lease unknown.
        Event(() => Release, e =>
        {
            e.CorrelateById(m => m.Message.LeaseId);
            e.OnMissingInstance(m => m.Redeliver(r =>
            {
                r.Intervals(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(15));
                r.OnRedeliveryLimitReached(n => n.ExecuteAsync(c =>
                {
                    _logger.LogInformation("Ignored release of an unknown lease {LeaseId} from {InstanceId}", c.Message.LeaseId, c.Message.InstanceId);
                    return Task.CompletedTask;
                }));
            }));
        });
        Event(() => Queued, e => Existing(e, m => m.LeaseId, "queued notice for an unknown lease"));
        Event(() => WorkerGranted, e => Existing(e, m => m.LeaseId, "worker for an unknown lease"));
        Event(() => Refused, e => Existing(e, m => m.LeaseId, "refusal of an unknown lease"));
        Event(() => Revocation, e => Existing(e, m => m.LeaseId, "revocation of an unknown lease"));
        Schedule(() => AllocationTimeout, x => x.AllocationTimeoutToken, s => s.Received = e => e.CorrelateById(m => m.Message.LeaseId));
        Schedule(() => MaxDuration, x => x.MaxDurationToken, s => s.Received = e => e.CorrelateById(m => m.Message.LeaseId));
        OnUnhandledEvent(c =>
        {
            _logger.LogInformation("Lease {LeaseId} in {State} ignores {Event}", c.Saga.CorrelationId, c.Saga.CurrentState, c.Event.Name);
            return Task.CompletedTask;
        });

        Initially(
            When(Requested)
                .Then(c => Record(c))
                .IfElse(c => Validate(c.Message) is null,
                    valid => valid
                        .Then(c => _logger.LogInformation(
                            "Lease {LeaseId} requested by {InstanceId} in {Pool} (task {TaskId})",
                            c.Saga.CorrelationId, c.Saga.InstanceId, c.Saga.Pool, c.Saga.TaskId))
                        .Publish(c => new AllocateWorker(c.Saga.Pool, c.Saga.CorrelationId, c.Saga.InstanceId, c.Saga.ServerThumbprint, c.Saga.RequestedAt))
                        .Then(c => c.Saga.AllocationTimeout = Definition(c.Saga.Pool).AllocationTimeout)
                        .TransitionTo(Allocating),
                    invalid => invalid
                        .ThenAsync(c =>
                        {
                            var (reason, detail) = Validate(c.Message)!.Value;
                            return Reject(c, reason, detail);
                        })
                        .TransitionTo(Rejected)));

        // A repeat of a known lease id.
        DuringAny(
            When(Requested, c => c.Message.InstanceId != c.Saga.InstanceId)
                .ThenAsync(c => Answer(c, new LeaseRejected(
                    c.Message.LeaseId, c.Message.InstanceId, LeaseRejectionReasons.LeaseIdConflict,
                    "this LeaseId belongs to another instance's lease; choose a new LeaseId"),
                    c.ResponseAddress, c.RequestId)),
            When(Requested, c => c.Message.InstanceId == c.Saga.InstanceId)
                .Then(c =>
                {
                    // A retry may come from a new client: answer there from now on.
                    c.Saga.ResponseAddress = c.ResponseAddress ?? c.Saga.ResponseAddress;
                    c.Saga.RequestId = c.ResponseAddress is null ? c.Saga.RequestId : c.RequestId;
                })
                .ThenAsync(AnswerAgain));

        // The allocation timer runs only while the lease waits in the pool's line: most leases are served or turned away
        // at once, and a timer set and cancelled within milliseconds is two trips through the scheduler for nothing (a
        // flood's refusals, above all). It runs to the deadline the lease got on arrival. A lease the pool answered at once
        // whose answer never came to a grant (a reservation lost with a process) has no timer: the sweep gives it up.
        During(Allocating, WaitingForWorker,
            When(Queued)
                .Then(c => c.Saga.Waited = true)
                .If(c => c.Saga.AllocationTimeoutToken is null, unarmed => unarmed
                    .Schedule(AllocationTimeout, c => new LeaseAllocationTimedOut(c.Saga.CorrelationId), c => AllocationDeadline(c.Saga) - _clock.GetUtcNow()))
                .TransitionTo(WaitingForWorker),
            When(WorkerGranted)
                .Unschedule(AllocationTimeout)
                .ThenAsync(Grant)
                .Schedule(MaxDuration, c => new LeaseMaxDurationReached(c.Saga.CorrelationId), c => c.Saga.ExpiresAt!.Value - _clock.GetUtcNow())
                .TransitionTo(Granted)
                .If(c => c.Saga.ReleaseRequested, released => released
                    .Unschedule(MaxDuration)
                    .ThenAsync(EndLease)
                    .TransitionTo(Released)),
            When(Release, c => c.Message.InstanceId == c.Saga.InstanceId)
                .Then(c =>
                {
                    c.Saga.ReleaseRequested = true;
                    _logger.LogInformation("Lease {LeaseId} released before it was granted; it ends once granted", c.Saga.CorrelationId);
                }),
            When(Refused)
                .Unschedule(AllocationTimeout)
                .ThenAsync(c => Reject(c, LeaseRejectionReasons.NoCapacity, c.Message.Detail))
                .TransitionTo(Rejected),
            GiveUp(When(AllocationTimeout.Received)));

        // From the sweep: the deadline of a lease with no timer passed (it carries no token, and the lease holds none).
        During(Allocating,
            GiveUp(When(AllocationTimeout.AnyReceived, c => c.GetSchedulingTokenId() is null && c.Saga.AllocationTimeoutToken is null)));

        During(Granted,
            When(Release, c => c.Message.InstanceId == c.Saga.InstanceId)
                .Unschedule(MaxDuration)
                .ThenAsync(EndLease)
                .TransitionTo(Released),
            // Redelivered: the process that granted may have died after saving and before publishing the grant.
            When(WorkerGranted, c => c.Message.WorkerId == c.Saga.WorkerId)
                .ThenAsync(c => Answer(c, GrantOf(c.Saga), c.Saga.ResponseAddress, c.Saga.RequestId)),
            // A second worker for a lease that already has one (the pool served a late repeat of the request): the
            // lease keeps the first; the second is sent idle for its instance rather than held leased for nothing.
            When(WorkerGranted, c => c.Message.WorkerId != c.Saga.WorkerId)
                .Then(c => _logger.LogWarning(
                    "Lease {LeaseId} of {InstanceId} already has worker {WorkerId}; worker {OtherWorkerId} is sent idle",
                    c.Saga.CorrelationId, c.Saga.InstanceId, c.Saga.WorkerId, c.Message.WorkerId))
                .Publish(c => new EndLease(c.Message.WorkerId, c.Saga.CorrelationId, Deprovision: false)),
            When(MaxDuration.Received)
                .ThenAsync(c => Revoke(c, LeaseRevocationReasons.MaxLeaseDuration))
                .Publish(c => new EndLease(c.Saga.WorkerId!.Value, c.Saga.CorrelationId, Deprovision: true))
                .TransitionTo(Revoked),
            When(Revocation, c => c.Message.WorkerId == c.Saga.WorkerId)
                .Unschedule(MaxDuration)
                .ThenAsync(c => Revoke(c, c.Message.Reason))
                .TransitionTo(Revoked));

        // A worker that arrives after the lease ended goes idle for its instance, unused (the worker ignores
        // an EndLease for a lease it no longer holds, so a late duplicate is harmless).
        During(Rejected, Released, Revoked,
            When(WorkerGranted)
                .Publish(c => new EndLease(c.Message.WorkerId, c.Saga.CorrelationId, Deprovision: false)));

        // Redelivered: the rejection was saved but its answer may never have been published (the broker went away in
        // between: found by the chaos run). The timer's token is spent, so only AnyReceived still sees it; the same
        // answer goes out again, which a repeat of the request would also get.
        During(Rejected,
            When(AllocationTimeout.AnyReceived)
                .ThenAsync(c => Answer(c, RejectionOf(c.Saga), c.Saga.ResponseAddress, c.Saga.RequestId)));

        // Redelivered: the EndLease of the first delivery may have died with its process (the worker ignores a second one).
        During(Released,
            When(Release, c => c.Message.InstanceId == c.Saga.InstanceId)
                .Publish(c => new EndLease(c.Saga.WorkerId!.Value, c.Saga.CorrelationId, Deprovision: false)));

        DuringAny(
            When(Release, c => c.Message.InstanceId != c.Saga.InstanceId)
                .Then(c => _logger.LogWarning(
                    "Lease {LeaseId} of {InstanceId}: release from {OtherInstanceId} ignored (not its lease)",
                    c.Saga.CorrelationId, c.Saga.InstanceId, c.Message.InstanceId)));
    }

    public State Allocating { get; private set; } = null!;
    public State WaitingForWorker { get; private set; } = null!;
    public State Granted { get; private set; } = null!;
    public State Released { get; private set; } = null!;
    public State Revoked { get; private set; } = null!;
    public State Rejected { get; private set; } = null!;

    public Event<LeaseRequested> Requested { get; private set; } = null!;
    public Event<LeaseReleased> Release { get; private set; } = null!;
    public Event<LeaseQueued> Queued { get; private set; } = null!;
    public Event<AllocationRefused> Refused { get; private set; } = null!;
    public Event<WorkerLeased> WorkerGranted { get; private set; } = null!;
    public Event<RevokeLease> Revocation { get; private set; } = null!;

    public Schedule<LeaseState, LeaseAllocationTimedOut> AllocationTimeout { get; private set; } = null!;
    public Schedule<LeaseState, LeaseMaxDurationReached> MaxDuration { get; private set; } = null!;

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

    (string Reason, string Detail)? Validate(LeaseRequested request) => LeaseRequestValidation.Check(request, _pools.CurrentValue.Pools.Keys);

    PoolOptions Definition(string pool) => _pools.CurrentValue.Pools[pool];

    /// <summary>When a lease still without a worker gets <c>NoCapacity</c>: its pool's allocation timeout after it arrived.</summary>
    public static DateTimeOffset AllocationDeadline(LeaseState lease) => lease.ReceivedAt + lease.AllocationTimeout;

    /// <summary>The lease stops waiting: the pool drops it from its line and the instance gets <c>NoCapacity</c>.</summary>
    EventActivityBinder<LeaseState, LeaseAllocationTimedOut> GiveUp(EventActivityBinder<LeaseState, LeaseAllocationTimedOut> timeout)
        => timeout
            .Publish(c => new CancelAllocation(c.Saga.Pool, c.Saga.CorrelationId))
            .ThenAsync(c => Reject(c, LeaseRejectionReasons.NoCapacity,
                $"no worker of pool '{c.Saga.Pool}' became available within {c.Saga.AllocationTimeout}; the pool is at its maximum or its workers fail to start"))
            .TransitionTo(Rejected);

    void Record(BehaviorContext<LeaseState, LeaseRequested> c)
    {
        var m = c.Message;
        var lease = c.Saga;
        lease.InstanceId = LeaseRequestValidation.Clip(m.InstanceId, LeaseRequestValidation.MaxInstanceIdLength);
        lease.ServerThumbprint = LeaseRequestValidation.Clip(m.ServerThumbprint, LeaseRequestValidation.MaxThumbprintLength);
        lease.Pool = LeaseRequestValidation.Clip(m.Pool, LeaseRequestValidation.MaxPoolLength).ToLowerInvariant();
        lease.TaskId = m.TaskId is null ? null : LeaseRequestValidation.Clip(m.TaskId, LeaseRequestValidation.MaxTaskIdLength);
        lease.RequestedAt = m.RequestedAt;
        lease.ReceivedAt = _clock.GetUtcNow();
        lease.ResponseAddress = c.ResponseAddress;
        lease.RequestId = c.RequestId;
    }

    async Task Grant(BehaviorContext<LeaseState, WorkerLeased> c)
    {
        var lease = c.Saga;
        var limits = await c.GetServiceOrCreateInstance<InstanceLifecycles>().ForAsync(lease.InstanceId, c.CancellationToken);
        // Whole milliseconds: the database keeps less than .NET's 100 ns ticks (PostgreSQL: microseconds), and a
        // repeat answers from the stored row, so it must be the very grant the first answer was (found by the chaos run).
        var now = _clock.GetUtcNow();
        now = now.AddTicks(-(now.Ticks % TimeSpan.TicksPerMillisecond));
        lease.WorkerId = c.Message.WorkerId;
        lease.WorkerAddress = c.Message.Address;
        lease.WorkerThumbprint = c.Message.AgentThumbprint;
        lease.Reused = c.Message.Reused;
        lease.GrantedAt = now;
        lease.ExpiresAt = now + limits.MaxLeaseDuration;
        var path = lease.Reused ? "reuse" : lease.Waited ? "cold" : "hot";
        DwTelemetry.LeaseWait.Record((now - lease.ReceivedAt).TotalSeconds, new("pool", lease.Pool), new("path", path));
        _logger.LogInformation(
            "Lease {LeaseId} of {InstanceId} granted worker {WorkerId} ({Path}, {Wait:0.###} s)",
            lease.CorrelationId, lease.InstanceId, lease.WorkerId, path, (now - lease.ReceivedAt).TotalSeconds);
        await Answer(c, GrantOf(lease), lease.ResponseAddress, lease.RequestId);
    }

    async Task Reject<T>(BehaviorContext<LeaseState, T> c, string reason, string detail)
        where T : class
    {
        var lease = c.Saga;
        lease.RejectReason = reason;
        lease.RejectDetail = detail;
        lease.EndedAt = _clock.GetUtcNow();
        _logger.LogInformation("Lease {LeaseId} of {InstanceId} rejected: {Reason}: {Detail}", lease.CorrelationId, lease.InstanceId, reason, detail);
        await Answer(c, new LeaseRejected(lease.CorrelationId, lease.InstanceId, reason, detail), lease.ResponseAddress, lease.RequestId);
    }

    async Task Revoke<T>(BehaviorContext<LeaseState, T> c, string reason)
        where T : class
    {
        var lease = c.Saga;
        lease.RevokeReason = reason;
        lease.EndedAt = _clock.GetUtcNow();
        _logger.LogInformation("Lease {LeaseId} of {InstanceId} revoked: {Reason}", lease.CorrelationId, lease.InstanceId, reason);
        await c.Publish(new LeaseRevoked(lease.CorrelationId, lease.InstanceId, lease.WorkerId!.Value, reason));
    }

    async Task EndLease<T>(BehaviorContext<LeaseState, T> c)
        where T : class
    {
        var lease = c.Saga;
        lease.EndedAt = _clock.GetUtcNow();
        _logger.LogInformation("Lease {LeaseId} of {InstanceId} released worker {WorkerId}", lease.CorrelationId, lease.InstanceId, lease.WorkerId);
        await c.Publish(new EndLease(lease.WorkerId!.Value, lease.CorrelationId, Deprovision: false));
    }

    /// <summary>The recorded outcome once more; nothing is re-run. A lease still being allocated answers when it is.</summary>
    Task AnswerAgain(BehaviorContext<LeaseState, LeaseRequested> c)
    {
        var lease = c.Saga;
        object? outcome = lease.RejectReason is not null
            ? RejectionOf(lease)
            : lease.GrantedAt is not null ? GrantOf(lease) : null;
        if (outcome is null && lease.EndedAt is null)
        {
            // Still allocating: ask the pool again, in case the first AllocateWorker died with the process that
            // saved this lease (a kill between the save and the outbox's publish). The pool queues a lease once
            // and re-sends the reservation of a lease it already gave a worker, so a repeat re-drives, never doubles.
            return c.Publish(new AllocateWorker(lease.Pool, lease.CorrelationId, lease.InstanceId, lease.ServerThumbprint, lease.RequestedAt));
        }

        return outcome is null ? Task.CompletedTask : Answer(c, outcome, c.ResponseAddress, c.RequestId);
    }

    static LeaseRejected RejectionOf(LeaseState lease)
        => new(lease.CorrelationId, lease.InstanceId, lease.RejectReason ?? LeaseRejectionReasons.NoCapacity, lease.RejectDetail ?? "");

    static LeaseGranted GrantOf(LeaseState lease)
        => new(lease.CorrelationId, lease.InstanceId, lease.WorkerId!.Value, lease.WorkerAddress!, lease.WorkerThumbprint!,
            lease.Reused, lease.GrantedAt!.Value, lease.ExpiresAt!.Value);

    /// <summary>Answers go to the request's response address when there is one, and are always published.</summary>
    static async Task Answer(BehaviorContext<LeaseState> c, object answer, Uri? responseAddress, Guid? requestId)
    {
        await c.Publish(answer, answer.GetType());
        if (responseAddress is not null)
        {
            var endpoint = await c.GetSendEndpoint(responseAddress);
            await endpoint.Send(answer, answer.GetType(), Pipe.Execute<SendContext>(s => s.RequestId = requestId));
        }
    }
}
