using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Instances;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>
/// One per VM: Provisioning → Ready → Trusting → Leased → Idle → Leased (re-use: no trust step) … →
/// Retiring → Reaping → gone. Max age counts from provisioning (the instance's own limit once it trusts
/// one); entering Leased arms it unless it is still armed (a re-use: the deadline only moves when the worker starts
/// trusting an instance, and re-arming would cost a cancel and a schedule per lease), and a deadline already past
/// fires at once. The idle timer likewise stands through re-uses and re-arms itself when it fires before the last
/// release's deadline. It accepts a lease only while Ready (trusting no one) or Idle for the very
/// instance it trusts, so it never serves two leases at once nor trusts two instances.
/// </summary>
public sealed class WorkerStateMachine : MassTransitStateMachine<WorkerState>
{
    static readonly Uri ProvisionQueue = CloudQueues.Address(CloudQueues.ProvisionWorker);
    static readonly Uri TrustQueue = CloudQueues.Address(CloudQueues.TrustWorker);
    internal static readonly Uri DeprovisionQueue = CloudQueues.Address(CloudQueues.DeprovisionWorker);

    readonly TimeProvider _clock;
    readonly ILogger<WorkerStateMachine> _logger;

    public WorkerStateMachine(IOptionsMonitor<LifecycleOptions> lifecycle, TimeProvider clock, ILogger<WorkerStateMachine> logger)
    {
        _clock = clock;
        _logger = logger;

        InstanceState(x => x.CurrentState);
        Event(() => Started, e => e.CorrelateById(m => m.Message.WorkerId));
        Event(() => Provisioned, e => Existing(e, m => m.WorkerId));
        Event(() => ProvisioningFailed, e => Existing(e, m => m.WorkerId));
        Event(() => Reserved, e => Existing(e, m => m.WorkerId));
        Event(() => Trusted, e => Existing(e, m => m.WorkerId));
        Event(() => TrustFailed, e => Existing(e, m => m.WorkerId));
        Event(() => LeaseEnded, e => Existing(e, m => m.WorkerId));
        Event(() => RetirementApproved, e => Existing(e, m => m.WorkerId));
        Event(() => Deprovisioned, e => Existing(e, m => m.WorkerId));
        Schedule(() => ProvisioningTimeout, x => x.ProvisioningTimeoutToken, s => s.Received = e => e.CorrelateById(m => m.Message.WorkerId));
        Schedule(() => TrustTimeout, x => x.TrustTimeoutToken, s => s.Received = e => e.CorrelateById(m => m.Message.WorkerId));
        Schedule(() => IdleTimeout, x => x.IdleTimeoutToken, s => s.Received = e => e.CorrelateById(m => m.Message.WorkerId));
        Schedule(() => MaxAge, x => x.MaxAgeToken, s => s.Received = e => e.CorrelateById(m => m.Message.WorkerId));
        OnUnhandledEvent(c =>
        {
            _logger.LogInformation("Worker {WorkerId} in {State} ignores {Event}", c.Saga.CorrelationId, c.Saga.CurrentState, c.Event.Name);
            return Task.CompletedTask;
        });

        Initially(
            When(Started)
                .Then(c =>
                {
                    c.Saga.Pool = c.Message.Pool;
                    c.Saga.CreatedAt = _clock.GetUtcNow();
                    Log(c.Saga, "provisioning");
                })
                .Send(ProvisionQueue, c => new ProvisionWorker(c.Saga.CorrelationId, c.Message.Pool, c.Message.Image, c.Message.Size))
                .Schedule(ProvisioningTimeout, c => new WorkerProvisioningTimedOut(c.Saga.CorrelationId), _ => lifecycle.CurrentValue.ProvisioningTimeout)
                .TransitionTo(Provisioning));

        During(Provisioning,
            When(Provisioned)
                .Unschedule(ProvisioningTimeout)
                .Then(c =>
                {
                    c.Saga.Address = c.Message.Address;
                    c.Saga.AgentThumbprint = c.Message.AgentThumbprint;
                    c.Saga.ProvisionedAt = c.Message.ProvisionedAt;
                    c.Saga.MaxAgeDeadline = c.Message.ProvisionedAt + lifecycle.CurrentValue.MaxWorkerAge;
                    DwTelemetry.ProvisionDuration.Record((c.Message.ProvisionedAt - c.Saga.CreatedAt).TotalSeconds, PoolTag(c.Saga));
                    Log(c.Saga, "ready");
                })
                .Schedule(MaxAge, c => new WorkerMaxAgeReached(c.Saga.CorrelationId), c => Until(c.Saga.MaxAgeDeadline))
                .Publish(c => new WorkerReady(c.Saga.Pool, c.Saga.CorrelationId))
                .TransitionTo(Ready),
            When(ProvisioningFailed)
                .Unschedule(ProvisioningTimeout)
                .Then(c => DwTelemetry.ProvisionFailures.Add(1, PoolTag(c.Saga)))
                .ThenAsync(c => Reap(c, "failed", $"provisioning failed: {c.Message.Reason}", failed: true))
                .TransitionTo(Reaping),
            When(ProvisioningTimeout.Received)
                .Then(c => DwTelemetry.ProvisionFailures.Add(1, PoolTag(c.Saga)))
                .ThenAsync(c => Reap(c, "failed", "provisioning timed out", failed: true))
                .TransitionTo(Reaping));

        During(Ready,
            When(Reserved)
                .Then(c => Reserve(c.Saga, c.Message))
                .Send(TrustQueue, c => new TrustWorker(c.Saga.CorrelationId, c.Message.InstanceId, c.Message.Thumbprint))
                .Schedule(TrustTimeout, c => new WorkerTrustTimedOut(c.Saga.CorrelationId), _ => lifecycle.CurrentValue.TrustTimeout)
                .TransitionTo(Trusting),
            When(MaxAge.Received)
                .Then(c => c.Saga.ReapReason = "max_age")
                .Publish(c => new WorkerRetirementRequested(c.Saga.Pool, c.Saga.CorrelationId, c.Saga.LastLeaseId))
                .TransitionTo(Retiring),
            // The pool's hot target was lowered: an unneeded hot worker is deleted like an idle one.
            When(RetirementApproved)
                .Unschedule(MaxAge)
                .ThenAsync(c => Reap(c, "idle", "surplus hot worker", failed: false))
                .TransitionTo(Reaping));

        During(Trusting,
            When(Trusted)
                .Unschedule(TrustTimeout)
                .ThenAsync(async c =>
                {
                    // From now on the instance's own max worker age applies.
                    var limits = await Limits(c, c.Saga.TrustedInstanceId);
                    var deadline = c.Saga.ProvisionedAt + limits.MaxWorkerAge;
                    c.Saga.MaxAgeMoved = deadline != c.Saga.MaxAgeDeadline;
                    c.Saga.MaxAgeDeadline = deadline;
                    c.Saga.AgentThumbprint = c.Message.AgentThumbprint;
                })
                .ThenAsync(c => StartLease(c, reused: false))
                // The armed timer stands unless the instance's own limit moved the deadline (a cancel and a schedule saved per lease).
                .If(c => c.Saga.MaxAgeMoved || c.Saga.MaxAgeToken is null, moved => moved
                    .Schedule(MaxAge, c => new WorkerMaxAgeReached(c.Saga.CorrelationId), c => Until(c.Saga.MaxAgeDeadline)))
                .TransitionTo(Leased),
            When(TrustFailed)
                .Unschedule(TrustTimeout)
                .Unschedule(MaxAge)
                .Then(c => DwTelemetry.TrustFailures.Add(1, PoolTag(c.Saga)))
                .ThenAsync(c => Reap(c, "failed", $"trust failed: {c.Message.Reason}", failed: true, requeue: c.Saga.CurrentLeaseId))
                .TransitionTo(Reaping),
            When(TrustTimeout.Received)
                .Unschedule(MaxAge)
                .Then(c => DwTelemetry.TrustFailures.Add(1, PoolTag(c.Saga)))
                .ThenAsync(c => Reap(c, "failed", "trust timed out", failed: true, requeue: c.Saga.CurrentLeaseId))
                .TransitionTo(Reaping));

        During(Leased,
            When(LeaseEnded, c => c.Message.LeaseId == c.Saga.CurrentLeaseId && !c.Message.Deprovision)
                .ThenAsync(async c =>
                {
                    var limits = await Limits(c, c.Saga.TrustedInstanceId);
                    var now = _clock.GetUtcNow();
                    c.Saga.LastLeaseId = c.Saga.CurrentLeaseId;
                    c.Saga.CurrentLeaseId = null;
                    c.Saga.LastLeaseEndedAt = now;
                    var deadline = now + limits.IdleTimeout;
                    // An idle timer left armed by an earlier idle spell is due by its deadline, so by this later one too (unless
                    // the instance's idle timeout was shortened since): it stands, and re-arms itself for the rest when it fires.
                    c.Saga.IdleTimerMoved = c.Saga.IdleTimeoutToken is null || deadline < c.Saga.IdleDeadline;
                    c.Saga.IdleDeadline = deadline;
                    Log(c.Saga, "idle");
                })
                .If(c => c.Saga.IdleTimerMoved, moved => moved
                    .Schedule(IdleTimeout, c => new WorkerIdleTimedOut(c.Saga.CorrelationId), c => Until(c.Saga.IdleDeadline)))
                .Publish(c => new WorkerIdle(c.Saga.Pool, c.Saga.CorrelationId, c.Saga.TrustedInstanceId!, c.Saga.LastLeaseId!.Value))
                .TransitionTo(Idle),
            When(LeaseEnded, c => c.Message.LeaseId == c.Saga.CurrentLeaseId && c.Message.Deprovision)
                .Unschedule(MaxAge)
                .Unschedule(IdleTimeout)
                .ThenAsync(c => Reap(c, "max_lease", "the lease reached its max duration", failed: false))
                .TransitionTo(Reaping),
            When(MaxAge.Received)
                .Unschedule(IdleTimeout)
                .Publish(c => new RevokeLease(c.Saga.CurrentLeaseId!.Value, c.Saga.CorrelationId, LeaseRevocationReasons.MaxWorkerAge))
                .ThenAsync(c => Reap(c, "max_age", "max worker age reached while leased", failed: false))
                .TransitionTo(Reaping),
            // The idle timer a re-use left standing fell due during the lease: the next release arms a new one.
            When(IdleTimeout.Received)
                .Then(c => c.Saga.IdleDeadline = null));

        During(Idle,
            // The idle timer stands (see LeaseEnded above): a cancel now and a schedule at the release saved per re-use.
            When(Reserved, c => TrustsAlready(c.Saga, c.Message))
                .Then(c => Reserve(c.Saga, c.Message))
                .ThenAsync(c => StartLease(c, reused: true))
                .If(c => c.Saga.MaxAgeToken is null, unarmed => unarmed
                    .Schedule(MaxAge, c => new WorkerMaxAgeReached(c.Saga.CorrelationId), c => Until(c.Saga.MaxAgeDeadline)))
                .TransitionTo(Leased),
            When(IdleTimeout.Received, c => IdleDeadlinePassed(c.Saga))
                .Then(c => c.Saga.ReapReason = "idle")
                .Publish(c => new WorkerRetirementRequested(c.Saga.Pool, c.Saga.CorrelationId, c.Saga.LastLeaseId))
                .TransitionTo(Retiring),
            // A timer that stood through re-uses, due before the last release's deadline: armed again for the rest.
            When(IdleTimeout.Received, c => !IdleDeadlinePassed(c.Saga))
                .Schedule(IdleTimeout, c => new WorkerIdleTimedOut(c.Saga.CorrelationId), c => Until(c.Saga.IdleDeadline)),
            When(MaxAge.Received)
                .Unschedule(IdleTimeout)
                .Then(c => c.Saga.ReapReason = "max_age")
                .Publish(c => new WorkerRetirementRequested(c.Saga.Pool, c.Saga.CorrelationId, c.Saga.LastLeaseId))
                .TransitionTo(Retiring));

        // The pool handed the worker to a lease before it saw the retirement request: serve the lease.
        During(Retiring,
            When(RetirementApproved)
                .Unschedule(MaxAge)
                .Unschedule(IdleTimeout)
                .ThenAsync(c => Reap(c, c.Saga.ReapReason ?? "idle", "retired", failed: false))
                .TransitionTo(Reaping),
            // Past its max age it serves no one: the lease goes back in line and the worker is deleted.
            When(Reserved, c => c.Saga.ReapReason == "max_age")
                .Unschedule(IdleTimeout)
                .ThenAsync(c => Reap(c, "max_age", "max age reached before the lease could start", failed: false, requeue: c.Message.LeaseId))
                .TransitionTo(Reaping),
            When(Reserved, c => c.Saga.ReapReason != "max_age" && c.Saga.TrustedInstanceId is null)
                .Then(c => c.Saga.ReapReason = null)
                .Then(c => Reserve(c.Saga, c.Message))
                .Send(TrustQueue, c => new TrustWorker(c.Saga.CorrelationId, c.Message.InstanceId, c.Message.Thumbprint))
                .Schedule(TrustTimeout, c => new WorkerTrustTimedOut(c.Saga.CorrelationId), _ => lifecycle.CurrentValue.TrustTimeout)
                .TransitionTo(Trusting),
            When(Reserved, c => c.Saga.ReapReason != "max_age" && TrustsAlready(c.Saga, c.Message))
                .Then(c => c.Saga.ReapReason = null)
                .Then(c => Reserve(c.Saga, c.Message))
                .ThenAsync(c => StartLease(c, reused: true))
                .If(c => c.Saga.MaxAgeToken is null, unarmed => unarmed
                    .Schedule(MaxAge, c => new WorkerMaxAgeReached(c.Saga.CorrelationId), c => Until(c.Saga.MaxAgeDeadline)))
                .TransitionTo(Leased));

        // A reservation that would break isolation is refused loudly; the pool never sends one.
        DuringAny(
            When(Reserved, c => c.Saga.TrustedInstanceId is not null && !TrustsAlready(c.Saga, c.Message))
                .Then(c => _logger.LogError(
                    "Worker {WorkerId} trusts {TrustedInstanceId} and refuses lease {LeaseId} of {InstanceId}",
                    c.Saga.CorrelationId, c.Saga.TrustedInstanceId, c.Message.LeaseId, c.Message.InstanceId)));

        During(Reaping,
            When(Deprovisioned)
                .Then(c =>
                {
                    DwTelemetry.WorkersReaped.Add(1, new KeyValuePair<string, object?>("reason", c.Saga.ReapReason ?? "failed"));
                    Log(c.Saga, "deprovisioned");
                })
                // Again, now that the VM is gone: the first notice may have died with the process (the pool forgets once).
                .Publish(c => new WorkerGone(c.Saga.Pool, c.Saga.CorrelationId, Failed: false, "deprovisioned", RequeueLeaseId: null))
                .Finalize());

        // Redeliveries. Delivery is at least once, and the outbox publishes only after the saga is saved: a process
        // killed in between loses what the first delivery published, and the broker redelivers the message to a
        // saga that has already moved on. Each such message re-sends the step it should have triggered (every
        // receiver takes a repeat as a no-op), so the chain picks up again instead of stalling.
        During(Provisioning,
            When(Started)
                .Send(ProvisionQueue, c => new ProvisionWorker(c.Saga.CorrelationId, c.Message.Pool, c.Message.Image, c.Message.Size)));
        During(Ready,
            When(Provisioned)
                .Publish(c => new WorkerReady(c.Saga.Pool, c.Saga.CorrelationId)));
        During(Trusting,
            When(Reserved, c => c.Message.LeaseId == c.Saga.CurrentLeaseId)
                .Send(TrustQueue, c => new TrustWorker(c.Saga.CorrelationId, c.Message.InstanceId, c.Message.Thumbprint)));
        During(Leased,
            When(Trusted, c => c.Message.InstanceId == c.Saga.TrustedInstanceId)
                .ThenAsync(c => RepeatLease(c)),
            When(Reserved, c => c.Message.LeaseId == c.Saga.CurrentLeaseId)
                .ThenAsync(c => RepeatLease(c)));
        During(Idle,
            When(LeaseEnded, c => c.Message.LeaseId == c.Saga.LastLeaseId)
                .Publish(c => new WorkerIdle(c.Saga.Pool, c.Saga.CorrelationId, c.Saga.TrustedInstanceId!, c.Saga.LastLeaseId!.Value)));
        // In Reaping, anything that may have led here repeats the delete: a late Trusted (its trust timed out first) or
        // a redelivered timeout (its token already spent) may be the only message left if the first delete was lost.
        During(Reaping,
            When(ProvisioningFailed).ThenAsync(RepeatReap),
            When(TrustFailed).ThenAsync(RepeatReap),
            When(Trusted).ThenAsync(RepeatReap),
            When(LeaseEnded).ThenAsync(RepeatReap),
            When(RetirementApproved).ThenAsync(RepeatReap),
            When(ProvisioningTimeout.AnyReceived).ThenAsync(RepeatReap),
            When(TrustTimeout.AnyReceived).ThenAsync(RepeatReap),
            When(IdleTimeout.AnyReceived).ThenAsync(RepeatReap),
            When(MaxAge.AnyReceived).ThenAsync(RepeatReap));

        SetCompletedWhenFinalized();
    }

    public State Provisioning { get; private set; } = null!;
    public State Ready { get; private set; } = null!;
    public State Trusting { get; private set; } = null!;
    public State Leased { get; private set; } = null!;
    public State Idle { get; private set; } = null!;
    public State Retiring { get; private set; } = null!;
    public State Reaping { get; private set; } = null!;

    public Event<StartWorker> Started { get; private set; } = null!;
    public Event<WorkerProvisioned> Provisioned { get; private set; } = null!;
    public Event<WorkerProvisioningFailed> ProvisioningFailed { get; private set; } = null!;
    public Event<ReserveWorker> Reserved { get; private set; } = null!;
    public Event<WorkerTrusted> Trusted { get; private set; } = null!;
    public Event<WorkerTrustFailed> TrustFailed { get; private set; } = null!;
    public Event<EndLease> LeaseEnded { get; private set; } = null!;
    public Event<WorkerRetirementApproved> RetirementApproved { get; private set; } = null!;
    public Event<WorkerDeprovisioned> Deprovisioned { get; private set; } = null!;

    public Schedule<WorkerState, WorkerProvisioningTimedOut> ProvisioningTimeout { get; private set; } = null!;
    public Schedule<WorkerState, WorkerTrustTimedOut> TrustTimeout { get; private set; } = null!;
    public Schedule<WorkerState, WorkerIdleTimedOut> IdleTimeout { get; private set; } = null!;
    public Schedule<WorkerState, WorkerMaxAgeReached> MaxAge { get; private set; } = null!;

    /// <summary>Messages about a worker that is already gone are dropped, not faulted.</summary>
    static void Existing<T>(IEventCorrelationConfigurator<WorkerState, T> e, Func<T, Guid> id)
        where T : class
    {
        e.CorrelateById(m => id(m.Message));
        e.OnMissingInstance(m => m.Discard());
    }

    void Reserve(WorkerState worker, ReserveWorker reservation)
    {
        RecordIdleTime(worker);
        worker.TrustStartedAt = worker.TrustedInstanceId is null ? _clock.GetUtcNow() : worker.TrustStartedAt;
        worker.CurrentLeaseId = reservation.LeaseId;
        worker.TrustedInstanceId = reservation.InstanceId;
        worker.TrustedThumbprint = reservation.Thumbprint;
        // A re-use leaves the idle timer standing, and its deadline with it (the next release compares against it).
        if (worker.IdleTimeoutToken is null)
        {
            worker.IdleDeadline = null;
        }
    }

    /// <summary>Re-use only for the very instance and certificate the worker already trusts.</summary>
    static bool TrustsAlready(WorkerState worker, ReserveWorker reservation)
        => reservation.InstanceId == worker.TrustedInstanceId
           && string.Equals(reservation.Thumbprint, worker.TrustedThumbprint, StringComparison.OrdinalIgnoreCase);

    async Task StartLease<T>(BehaviorContext<WorkerState, T> c, bool reused)
        where T : class
    {
        var worker = c.Saga;
        worker.LeaseCount++;
        Log(worker, reused ? "leased again" : "leased");
        await c.Publish(new WorkerLeased(worker.CurrentLeaseId!.Value, worker.CorrelationId, worker.Address!, worker.AgentThumbprint!, reused));
    }

    async Task Reap<T>(BehaviorContext<WorkerState, T> c, string reason, string detail, bool failed, Guid? requeue = null)
        where T : class
    {
        var worker = c.Saga;
        RecordIdleTime(worker);
        worker.ReapReason = reason;
        worker.ReapStartedAt = _clock.GetUtcNow();
        _logger.LogInformation(
            "Worker {WorkerId} of {Pool} is deprovisioned ({Reason}: {Detail})", worker.CorrelationId, worker.Pool, reason, detail);
        await c.Send(DeprovisionQueue, new DeprovisionWorker(worker.CorrelationId, reason));
        await c.Publish(new WorkerGone(worker.Pool, worker.CorrelationId, failed, detail, requeue));
    }

    /// <summary>The grant of the current lease once more (the lease saga answers a repeat with the same grant).</summary>
    static Task RepeatLease<T>(BehaviorContext<WorkerState, T> c)
        where T : class
    {
        var worker = c.Saga;
        return c.Publish(new WorkerLeased(worker.CurrentLeaseId!.Value, worker.CorrelationId, worker.Address!, worker.AgentThumbprint!, Reused: worker.LeaseCount > 1));
    }

    /// <summary>The delete once more (idempotent in the cloud), and the pool told again that the worker is leaving.</summary>
    static async Task RepeatReap<T>(BehaviorContext<WorkerState, T> c)
        where T : class
    {
        var worker = c.Saga;
        await c.Send(DeprovisionQueue, new DeprovisionWorker(worker.CorrelationId, worker.ReapReason ?? "failed"));
        await c.Publish(new WorkerGone(worker.Pool, worker.CorrelationId, Failed: false, "deprovisioning", RequeueLeaseId: null));
    }

    static Task<EffectiveLifecycle> Limits<T>(BehaviorContext<WorkerState, T> c, string? instanceId)
        where T : class
        => c.GetServiceOrCreateInstance<InstanceLifecycles>().ForAsync(instanceId, c.CancellationToken);

    bool IdleDeadlinePassed(WorkerState worker) => Until(worker.IdleDeadline) == TimeSpan.Zero;

    TimeSpan Until(DateTimeOffset? deadline)
        => deadline is { } d && d > _clock.GetUtcNow() ? d - _clock.GetUtcNow() : TimeSpan.Zero;

    /// <summary>A worker with no lease stops idling (it is reserved or deleted): count the time since it became ready or idle.</summary>
    void RecordIdleTime(WorkerState worker)
    {
        if (worker.CurrentLeaseId is null && (worker.LastLeaseEndedAt ?? worker.ProvisionedAt) is { } since)
        {
            DwTelemetry.WorkerIdleSeconds.Add(Math.Max(0, (_clock.GetUtcNow() - since).TotalSeconds), PoolTag(worker));
        }
    }

    static KeyValuePair<string, object?> PoolTag(WorkerState worker) => new("pool", worker.Pool);

    void Log(WorkerState worker, string what)
        => _logger.LogInformation(
            "Worker {WorkerId} of {Pool} {What} (instance {InstanceId}, lease {LeaseId})",
            worker.CorrelationId, worker.Pool, what, worker.TrustedInstanceId, worker.CurrentLeaseId);
}
