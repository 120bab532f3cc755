using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Instances;
using DynamicWorkers.LeaseSaga.Pools;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>
/// One per VM: Provisioning → Ready → Trusting → Leased → Idle → Leased (re-use: no trust step) … → Reaping → gone.
/// A lease claims a Ready or Idle worker by changing its row (see <see cref="Allocator"/>); this machine runs the
/// steps that follow and the worker's one timer, due at its earliest deadline (provisioning, max age, the lease's
/// expiry, idle timeout). A later deadline leaves the timer standing and it re-arms for the rest when it fires; a
/// timer replaced by an earlier one is ignored by its token. A worker serves one lease at a time and trusts the
/// instance of its first lease only, for its whole life.
/// </summary>
public sealed class WorkerStateMachine : MassTransitStateMachine<WorkerState>
{
    internal static readonly Uri DeprovisionQueue = CloudQueues.Address(CloudQueues.DeprovisionWorker);

    readonly IOptionsMonitor<LifecycleOptions> _lifecycle;
    readonly TimeProvider _clock;
    readonly ILogger<WorkerStateMachine> _logger;

    public WorkerStateMachine(IOptionsMonitor<LifecycleOptions> lifecycle, TimeProvider clock, ILogger<WorkerStateMachine> logger)
    {
        _lifecycle = lifecycle;
        _clock = clock;
        _logger = logger;

        InstanceState(x => x.CurrentState);
        Event(() => Provisioned, e => Existing(e, m => m.WorkerId));
        Event(() => ProvisioningFailed, e => Existing(e, m => m.WorkerId));
        Event(() => Trusted, e => Existing(e, m => m.WorkerId));
        Event(() => TrustFailed, e => Existing(e, m => m.WorkerId));
        Event(() => DeadlinesCheck, e => Existing(e, m => m.WorkerId));
        Event(() => Deprovisioned, e => Existing(e, m => m.WorkerId));
        Schedule(() => Timer, x => x.TimerToken, s => s.Received = e => e.CorrelateById(m => m.Message.WorkerId));
        OnUnhandledEvent(c =>
        {
            _logger.LogInformation("Worker {WorkerId} in {State} ignores {Event}", c.Saga.CorrelationId, c.Saga.CurrentState, c.Event.Name);
            return Task.CompletedTask;
        });

        // The pool keeper saved the row as Provisioning, armed its timer and asked the Provisioner.
        During(Provisioning,
            When(Provisioned)
                .Then(c =>
                {
                    c.Saga.Address = c.Message.Address;
                    c.Saga.AgentThumbprint = c.Message.AgentThumbprint;
                    c.Saga.ProvisionedAt = c.Message.ProvisionedAt;
                    c.Saga.MaxAgeDeadline = c.Message.ProvisionedAt + _lifecycle.CurrentValue.MaxWorkerAge;
                    DwTelemetry.ProvisionDuration.Record((c.Message.ProvisionedAt - c.Saga.CreatedAt).TotalSeconds, PoolTag(c.Saga));
                })
                .ThenAsync(BecomeReady)
                .IfElse(c => c.Saga.CurrentState == WorkerStates.Reaping,
                    surplus => surplus.TransitionTo(Reaping),
                    kept => kept.IfElse(c => c.Saga.CurrentLeaseId is null,
                        ready => ready.Then(c => Log(c.Saga, "ready")).TransitionTo(Ready),
                        taken => taken.TransitionTo(Trusting)))
                .ThenAsync(ArmTimer),
            When(ProvisioningFailed)
                .Then(c => DwTelemetry.ProvisionFailures.Add(1, PoolTag(c.Saga)))
                .ThenAsync(c => Fail(c, $"provisioning failed: {c.Message.Reason}"))
                .TransitionTo(Reaping));

        During(Trusting,
            When(Trusted, c => c.Message.InstanceId == c.Saga.TrustedInstanceId)
                .ThenAsync(async c =>
                {
                    // From now on the instance's own limits apply.
                    var limits = await c.GetServiceOrCreateInstance<InstanceLifecycles>().ForAsync(c.Saga.TrustedInstanceId, c.CancellationToken);
                    c.Saga.MaxAgeDeadline = c.Saga.ProvisionedAt + limits.MaxWorkerAge;
                    c.Saga.AgentThumbprint = c.Message.AgentThumbprint;
                    c.Saga.LeaseExpiresAt = Allocator.WholeMilliseconds(_clock.GetUtcNow()) + limits.MaxLeaseDuration;
                    c.Saga.LeaseCount++;
                    Log(c.Saga, "leased");
                })
                .ThenAsync(RepeatLease)
                .TransitionTo(Leased)
                .ThenAsync(ArmTimer),
            When(TrustFailed)
                .Then(c => DwTelemetry.TrustFailures.Add(1, PoolTag(c.Saga)))
                .ThenAsync(c => Fail(c, $"trust failed: {c.Message.Reason}"))
                .TransitionTo(Reaping));

        // Redelivered: the grant of the first delivery may have died with its process.
        During(Leased,
            When(Trusted, c => c.Message.InstanceId == c.Saga.TrustedInstanceId)
                .ThenAsync(RepeatLease));

        OnDeadlines(Timer.Received);
        OnDeadlines(DeadlinesCheck);

        // A confirmation for another instance breaks isolation: refused loudly; no claim ever sends one.
        DuringAny(
            When(Trusted, c => c.Message.InstanceId != c.Saga.TrustedInstanceId)
                .Then(c => _logger.LogError(
                    "Worker {WorkerId} trusts {TrustedInstanceId} and ignores a trust confirmation for {InstanceId}",
                    c.Saga.CorrelationId, c.Saga.TrustedInstanceId, c.Message.InstanceId)));

        During(Reaping,
            When(Deprovisioned)
                .Then(c =>
                {
                    DwTelemetry.WorkersReaped.Add(1, new KeyValuePair<string, object?>("reason", c.Saga.ReapReason ?? ReapReasons.Failed));
                    Log(c.Saga, "deprovisioned");
                })
                .Finalize(),
            // Anything that may have led here repeats the delete: it is idempotent, and the first may have been lost.
            When(ProvisioningFailed).ThenAsync(RepeatReap),
            When(TrustFailed).ThenAsync(RepeatReap),
            When(Trusted, c => c.Message.InstanceId == c.Saga.TrustedInstanceId).ThenAsync(RepeatReap));

        SetCompletedWhenFinalized();
    }

    public State Provisioning { get; private set; } = null!;
    public State Ready { get; private set; } = null!;
    public State Trusting { get; private set; } = null!;
    public State Leased { get; private set; } = null!;
    public State Idle { get; private set; } = null!;
    public State Reaping { get; private set; } = null!;

    public Event<WorkerProvisioned> Provisioned { get; private set; } = null!;
    public Event<WorkerProvisioningFailed> ProvisioningFailed { get; private set; } = null!;
    public Event<WorkerTrusted> Trusted { get; private set; } = null!;
    public Event<WorkerTrustFailed> TrustFailed { get; private set; } = null!;
    public Event<CheckWorkerDeadlines> DeadlinesCheck { get; private set; } = null!;
    public Event<WorkerDeprovisioned> Deprovisioned { get; private set; } = null!;

    public Schedule<WorkerState, WorkerTimerDue> Timer { get; private set; } = null!;

    /// <summary>
    /// What the timer (or a check from a lease or the sweep) does in each state: act on a deadline that passed, else
    /// arm the timer for the earliest one left (a timer that stood through a later deadline re-arms for the rest).
    /// </summary>
    void OnDeadlines<T>(Event<T> due)
        where T : class
    {
        During(Provisioning,
            When(due, c => DeadlinePassed(c.Saga))
                .Then(c => DwTelemetry.ProvisionFailures.Add(1, PoolTag(c.Saga)))
                .ThenAsync(c => Fail(c, "provisioning timed out"))
                .TransitionTo(Reaping));
        During(Ready,
            When(due, c => DeadlinePassed(c.Saga))
                .ThenAsync(c => Reap(c, ReapReasons.MaxAge, "max age reached while hot"))
                .TransitionTo(Reaping));
        // Trust has no timer of its own (it takes seconds): the sweep asks for a check once it is overdue.
        During(Trusting,
            When(due, c => TrustOverdue(c.Saga))
                .Then(c => DwTelemetry.TrustFailures.Add(1, PoolTag(c.Saga)))
                .ThenAsync(c => Fail(c, "trust timed out"))
                .TransitionTo(Reaping));
        During(Leased,
            When(due, c => Passed(c.Saga.LeaseExpiresAt))
                .Publish(c => new RevokeLease(c.Saga.CurrentLeaseId!.Value, c.Saga.CorrelationId, LeaseRevocationReasons.MaxLeaseDuration))
                .ThenAsync(c => Reap(c, ReapReasons.MaxLease, "the lease reached its max duration"))
                .TransitionTo(Reaping),
            When(due, c => !Passed(c.Saga.LeaseExpiresAt) && Passed(c.Saga.MaxAgeDeadline))
                .Publish(c => new RevokeLease(c.Saga.CurrentLeaseId!.Value, c.Saga.CorrelationId, LeaseRevocationReasons.MaxWorkerAge))
                .ThenAsync(c => Reap(c, ReapReasons.MaxAge, "max worker age reached while leased"))
                .TransitionTo(Reaping));
        During(Idle,
            When(due, c => Passed(c.Saga.MaxAgeDeadline))
                .ThenAsync(c => Reap(c, ReapReasons.MaxAge, "max age reached while idle"))
                .TransitionTo(Reaping),
            When(due, c => !Passed(c.Saga.MaxAgeDeadline) && Passed(c.Saga.IdleDeadline))
                .ThenAsync(c => Reap(c, ReapReasons.Idle, "idle timeout"))
                .TransitionTo(Reaping));
        foreach (var state in new[] { Provisioning, Ready, Trusting, Leased, Idle })
        {
            During(state, When(due, c => !DeadlinePassed(c.Saga) && !TrustOverdue(c.Saga)).ThenAsync(ArmTimer));
        }

        // Being deleted: a timer or check may be all that is left if the first delete was lost.
        During(Reaping, When(due).ThenAsync(RepeatReap));
    }

    /// <summary>Messages about a worker that is already gone are dropped, not faulted.</summary>
    static void Existing<T>(IEventCorrelationConfigurator<WorkerState, T> e, Func<T, Guid> id)
        where T : class
    {
        e.CorrelateById(m => id(m.Message));
        e.OnMissingInstance(m => m.Discard());
    }

    /// <summary>Provisioned: it takes the lease that has waited longest, if any, else it is a hot worker unless the pool now has too many or was removed.</summary>
    async Task BecomeReady(BehaviorContext<WorkerState, WorkerProvisioned> c)
    {
        var allocator = c.GetServiceOrCreateInstance<Allocator>();
        var pool = await allocator.LockPoolAsync(c.Saga.Pool, c.CancellationToken);
        pool.ConsecutiveFailures = 0;
        c.Saga.CurrentState = WorkerStates.Ready;
        // A removed pool's line is being rejected: the worker serves none of it and the rebalance deletes it.
        if (!allocator.IsDraining(c.Saga.Pool) && await allocator.ClaimWaitingAsync(c.Saga.Pool, c.CancellationToken) is { } lease)
        {
            await allocator.AssignAsync(c, c.Saga, lease);
        }

        await allocator.RebalanceAsync(c, pool, readyWorker: c.Saga);
    }

    /// <summary>Failed to start or to trust: deleted, its lease (if any) back in line, and the failure counted toward the pool's backoff.</summary>
    async Task Fail<T>(BehaviorContext<WorkerState, T> c, string detail)
        where T : class
    {
        var allocator = c.GetServiceOrCreateInstance<Allocator>();
        var pool = await allocator.LockPoolAsync(c.Saga.Pool, c.CancellationToken);
        if (c.Saga.CurrentLeaseId is { } leaseId)
        {
            await allocator.RequeueAsync(c, leaseId, c.Saga.CorrelationId);
        }

        await allocator.RecordFailureAsync(c, pool);
        await allocator.ReapAsync(c, c.Saga, ReapReasons.Failed, detail);
        await allocator.RebalanceAsync(c, pool);
    }

    /// <summary>Deleted for a deadline: the pool replaces it if it is short of workers now.</summary>
    static async Task Reap<T>(BehaviorContext<WorkerState, T> c, string reason, string detail)
        where T : class
    {
        var allocator = c.GetServiceOrCreateInstance<Allocator>();
        var pool = await allocator.LockPoolAsync(c.Saga.Pool, c.CancellationToken);
        await allocator.ReapAsync(c, c.Saga, reason, detail);
        await allocator.RebalanceAsync(c, pool);
    }

    /// <summary>The grant of the current lease (again, for a redelivery: the lease saga answers a repeat with the same grant).</summary>
    static Task RepeatLease<T>(BehaviorContext<WorkerState, T> c)
        where T : class
    {
        var worker = c.Saga;
        return c.Publish(new WorkerLeased(worker.CurrentLeaseId!.Value, worker.CorrelationId, worker.Address!, worker.AgentThumbprint!,
            Reused: worker.LeaseCount > 1, worker.LeaseExpiresAt!.Value));
    }

    static Task RepeatReap<T>(BehaviorContext<WorkerState, T> c)
        where T : class
        => c.Send(DeprovisionQueue, new DeprovisionWorker(c.Saga.CorrelationId, c.Saga.ReapReason ?? ReapReasons.Failed));

    /// <summary>
    /// Schedules the timer for the earliest deadline unless one stands that is due no later. A replaced timer is not
    /// cancelled: it fires later and is ignored by its token, one delivery either way and no write to the job store now.
    /// </summary>
    async Task ArmTimer<T>(BehaviorContext<WorkerState, T> c)
        where T : class
    {
        var worker = c.Saga;
        var allocator = c.GetServiceOrCreateInstance<Allocator>();
        var now = _clock.GetUtcNow();
        if (c.GetSchedulingTokenId() is { } fired && fired == worker.TimerToken)
        {
            worker.TimerToken = null;
        }

        if (!allocator.NeedsTimer(worker, now) || Allocator.EarliestDeadline(worker, _lifecycle.CurrentValue.ProvisioningTimeout) is not { } due)
        {
            return;
        }

        var delay = due > now ? due - now : TimeSpan.Zero;
        var scheduled = await c.ScheduleSend(c.ReceiveContext.InputAddress, delay, new WorkerTimerDue(worker.CorrelationId));
        worker.TimerToken = scheduled.TokenId;
        worker.TimerDueAt = due > now ? due : now;
    }

    /// <summary>Trust's deadline is the sweep's (<see cref="TrustOverdue"/>); every other state's is the timer's.</summary>
    bool DeadlinePassed(WorkerState worker)
        => worker.CurrentState != WorkerStates.Trusting && Passed(Allocator.EarliestDeadline(worker, _lifecycle.CurrentValue.ProvisioningTimeout));

    bool TrustOverdue(WorkerState worker)
        => worker.CurrentState == WorkerStates.Trusting && Passed(worker.TrustStartedAt + _lifecycle.CurrentValue.TrustTimeout);

    bool Passed(DateTimeOffset? deadline) => deadline is { } d && d <= _clock.GetUtcNow();

    static KeyValuePair<string, object?> PoolTag(WorkerState worker) => new("pool", worker.Pool);

    void Log(WorkerState worker, string what)
        => _logger.LogInformation(
            "Worker {WorkerId} of {Pool} {What} (instance {InstanceId}, lease {LeaseId})",
            worker.CorrelationId, worker.Pool, what, worker.TrustedInstanceId, worker.CurrentLeaseId);
}
