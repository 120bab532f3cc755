using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Configuration;
using MassTransit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// One per pool: the single place where allocation decisions for the pool are made, so two leases can never
/// get the same worker (a second decision running at the same time loses on the saga's version and is
/// retried on the new state). It keeps the pool at its hot target plus one worker per waiting lease, never
/// above <c>MaxWorkers</c>, and backs off after repeated failures so a broken image does not burn money in a loop.
/// </summary>
public sealed class PoolStateMachine : MassTransitStateMachine<PoolState>
{
    const int FailuresBeforeBackoff = 3;
    static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(30);
    static readonly TimeSpan LongestBackoff = TimeSpan.FromMinutes(30);

    readonly IOptionsMonitor<PoolsOptions> _pools;
    readonly TimeProvider _clock;
    readonly ILogger<PoolStateMachine> _logger;
    readonly TurnAwayWarnings _turnAways;

    public PoolStateMachine(IOptionsMonitor<PoolsOptions> pools, TimeProvider clock, ILogger<PoolStateMachine> logger)
    {
        _pools = pools;
        _clock = clock;
        _logger = logger;
        _turnAways = new TurnAwayWarnings(clock);

        InstanceState(x => x.CurrentState);
        Event(() => Reconciled, e => e.CorrelateById(m => PoolIds.For(m.Message.Pool)));
        Event(() => Resized, e => e.CorrelateById(m => PoolIds.For(m.Message.Pool)));
        Event(() => AllocationRequested, e => e.CorrelateById(m => PoolIds.For(m.Message.Pool)));
        Event(() => AllocationCancelled, e => e.CorrelateById(m => PoolIds.For(m.Message.Pool)));
        Event(() => WorkerBecameReady, e => e.CorrelateById(m => PoolIds.For(m.Message.Pool)));
        Event(() => WorkerBecameIdle, e => e.CorrelateById(m => PoolIds.For(m.Message.Pool)));
        Event(() => RetirementRequested, e => e.CorrelateById(m => PoolIds.For(m.Message.Pool)));
        Event(() => WorkerLeft, e => e.CorrelateById(m => PoolIds.For(m.Message.Pool)));
        Schedule(() => BackoffEnded, x => x.BackoffToken, s => s.Received = e => e.CorrelateById(m => PoolIds.For(m.Message.Pool)));

        // Any message may be the first the pool sees (start-up races): each creates the pool from configuration.
        During(Initial, Active,
            When(Reconciled)
                .Then(c => Open(c.Saga, c.Message.Pool))
                .ThenAsync(Rebalance)
                .TransitionTo(Active),
            When(Resized)
                .Then(c => Open(c.Saga, c.Message.Pool))
                .Then(c => Resize(c.Saga, c.Message.HotTarget, c.Message.MaxWorkers))
                .ThenAsync(Rebalance)
                .TransitionTo(Active),
            When(AllocationRequested)
                .Then(c => Open(c.Saga, c.Message.Pool))
                .ThenAsync(async c =>
                {
                    var m = c.Message;
                    var queued = c.Saga.Book.Enqueue(new WaitingLease(m.LeaseId, m.InstanceId, m.Thumbprint, m.RequestedAt));
                    var maxWaiting = Definition(c.Saga.Name).MaxWaiting;
                    if (queued && c.Saga.Book.TurnAway(m.LeaseId, maxWaiting))
                    {
                        if (_turnAways.ShouldWarn(c.Saga.Name, out var unreported))
                        {
                            _logger.LogWarning(
                                "Pool {Pool}: lease {LeaseId} of {InstanceId} turned away, {MaxWaiting} leases already wait; {Unreported} more turned away since the previous warning (at most one every {IntervalSeconds} s per pool in this process)",
                                c.Saga.Name, m.LeaseId, m.InstanceId, maxWaiting, unreported, TurnAwayWarnings.Interval.TotalSeconds);
                        }

                        await c.Publish(new AllocationRefused(m.LeaseId,
                            $"pool '{c.Saga.Name}' already has {maxWaiting} leases waiting (Pools:{c.Saga.Name}:MaxWaiting) and no idle worker of this instance"));
                        return;
                    }

                    if (!queued
                        && c.Saga.Book.Assigned.FirstOrDefault(a => a.LeaseId == m.LeaseId && !a.Cancelled) is { } assigned)
                    {
                        // Asked again for a lease that already has a worker: the reservation may have died with the
                        // process that decided it. The worker takes a repeated reservation of the same lease as a no-op
                        // that re-sends its next step.
                        await c.Publish(new ReserveWorker(assigned.WorkerId, assigned.LeaseId, assigned.InstanceId, assigned.Thumbprint));
                    }

                    await Rebalance(c);
                    if (c.Saga.Book.PositionOf(m.LeaseId) is > 0 and var position)
                    {
                        await c.Publish(new LeaseQueued(m.LeaseId, position));
                    }
                })
                .TransitionTo(Active),
            When(AllocationCancelled)
                .Then(c => Open(c.Saga, c.Message.Pool))
                .ThenAsync(async c =>
                {
                    // The lease gave up while it had a worker: that worker may never have heard of it (its
                    // reservation died with the process that decided it), and would then sit reserved for good.
                    // Reserving it again is a no-op if it did hear; if not, it serves the ended lease, which sends it
                    // idle for its instance (the path of any worker that arrives after its lease ended).
                    if (c.Saga.Book.Assigned.FirstOrDefault(a => a.LeaseId == c.Message.LeaseId && !a.Cancelled) is { } assigned)
                    {
                        await c.Publish(new ReserveWorker(assigned.WorkerId, assigned.LeaseId, assigned.InstanceId, assigned.Thumbprint));
                    }
                })
                .Then(c => c.Saga.Book.Cancel(c.Message.LeaseId))
                .ThenAsync(Rebalance)
                .TransitionTo(Active),
            When(WorkerBecameReady)
                .Then(c => Open(c.Saga, c.Message.Pool))
                .ThenAsync(async c =>
                {
                    c.Saga.ConsecutiveFailures = 0;
                    if (!c.Saga.Book.BecameReady(c.Message.WorkerId))
                    {
                        // Forgotten as never started (see the sweep), then started late after all: nobody counts on it.
                        _logger.LogWarning("Pool {Pool}: worker {WorkerId} is ready but no longer counted; it is deleted", c.Saga.Name, c.Message.WorkerId);
                        await c.Publish(new WorkerRetirementApproved(c.Message.WorkerId));
                    }
                })
                .ThenAsync(Rebalance)
                .TransitionTo(Active),
            When(WorkerBecameIdle)
                .Then(c => Open(c.Saga, c.Message.Pool))
                .Then(c => c.Saga.Book.BecameIdle(c.Message.WorkerId, c.Message.LeaseId))
                .ThenAsync(async c =>
                {
                    // Idle after a lease other than the one it is booked for: it may have ignored that reservation while
                    // it served a late repeat of an older one. Now it is free; a second reservation of the same lease
                    // is a no-op to a worker that did take it.
                    if (c.Saga.Book.Assigned.FirstOrDefault(a => a.WorkerId == c.Message.WorkerId && a.LeaseId != c.Message.LeaseId) is { } booked)
                    {
                        await c.Publish(new ReserveWorker(booked.WorkerId, booked.LeaseId, booked.InstanceId, booked.Thumbprint));
                    }
                })
                .ThenAsync(Rebalance)
                .TransitionTo(Active),
            When(RetirementRequested)
                .Then(c => Open(c.Saga, c.Message.Pool))
                .ThenAsync(async c =>
                {
                    // Not on the lists any more means a lease got it meanwhile: the worker serves that lease instead.
                    if (c.Saga.Book.Retire(c.Message.WorkerId, c.Message.LastLeaseId))
                    {
                        await c.Publish(new WorkerRetirementApproved(c.Message.WorkerId));
                    }

                    await Rebalance(c);
                })
                .TransitionTo(Active),
            When(WorkerLeft)
                .Then(c => Open(c.Saga, c.Message.Pool))
                .Then(c =>
                {
                    if (c.Message.RequeueLeaseId is { } lease)
                    {
                        c.Saga.Book.Requeue(lease);
                    }

                    c.Saga.Book.Gone(c.Message.WorkerId);
                    if (c.Message.Failed)
                    {
                        c.Saga.ConsecutiveFailures++;
                    }
                })
                .If(c => c.Saga.ConsecutiveFailures >= FailuresBeforeBackoff && !(c.Saga.BackoffUntil > _clock.GetUtcNow()), backoff => backoff
                    .Then(c =>
                    {
                        c.Saga.BackoffUntil = _clock.GetUtcNow() + BackoffDelay(c.Saga.ConsecutiveFailures);
                        _logger.LogWarning(
                            "Pool {Pool}: {Failures} worker failures in a row, not provisioning until {BackoffUntil:O}",
                            c.Saga.Name, c.Saga.ConsecutiveFailures, c.Saga.BackoffUntil);
                    })
                    .Schedule(BackoffEnded, c => new PoolBackoffEnded(c.Saga.Name), c => BackoffDelay(c.Saga.ConsecutiveFailures)))
                .ThenAsync(Rebalance)
                .TransitionTo(Active));

        During(Active,
            When(BackoffEnded.Received)
                .Then(c => c.Saga.BackoffUntil = null)
                .ThenAsync(Rebalance));
    }

    public State Active { get; private set; } = null!;

    public Event<ReconcilePool> Reconciled { get; private set; } = null!;
    public Event<SetPoolSize> Resized { get; private set; } = null!;
    public Event<AllocateWorker> AllocationRequested { get; private set; } = null!;
    public Event<CancelAllocation> AllocationCancelled { get; private set; } = null!;
    public Event<WorkerReady> WorkerBecameReady { get; private set; } = null!;
    public Event<WorkerIdle> WorkerBecameIdle { get; private set; } = null!;
    public Event<WorkerRetirementRequested> RetirementRequested { get; private set; } = null!;
    public Event<WorkerGone> WorkerLeft { get; private set; } = null!;
    public Schedule<PoolState, PoolBackoffEnded> BackoffEnded { get; private set; } = null!;

    /// <summary>30 s at the third failure in a row, doubling, at most 30 minutes.</summary>
    public static TimeSpan BackoffDelay(int consecutiveFailures)
    {
        var doublings = Math.Min(consecutiveFailures - FailuresBeforeBackoff, 10);
        var delay = FirstBackoff * Math.Pow(2, Math.Max(0, doublings));
        return delay < LongestBackoff ? delay : LongestBackoff;
    }

    void Open(PoolState pool, string name)
    {
        if (pool.Name.Length > 0)
        {
            return;
        }

        var definition = Definition(name);
        pool.Name = name.ToLowerInvariant();
        pool.HotTarget = definition.HotTarget;
        pool.MaxWorkers = definition.MaxWorkers;
    }

    void Resize(PoolState pool, int hotTarget, int maxWorkers)
    {
        if (hotTarget < 0 || maxWorkers < 1 || hotTarget > maxWorkers)
        {
            throw new ArgumentException($"SetPoolSize for '{pool.Name}': need 0 <= HotTarget <= MaxWorkers and MaxWorkers >= 1, got HotTarget {hotTarget}, MaxWorkers {maxWorkers}");
        }

        _logger.LogInformation("Pool {Pool}: size {HotTarget}/{MaxWorkers} (was {OldHotTarget}/{OldMaxWorkers})", pool.Name, hotTarget, maxWorkers, pool.HotTarget, pool.MaxWorkers);
        pool.HotTarget = hotTarget;
        pool.MaxWorkers = maxWorkers;
    }

    PoolOptions Definition(string name)
        => _pools.CurrentValue.Pools.TryGetValue(name, out var definition)
            ? definition
            : throw new ArgumentException($"pool '{name}' is not configured (Pools:{name})");

    /// <summary>Hands waiting leases their workers, retires hot workers beyond the target, then starts the workers the pool is short of.</summary>
    async Task Rebalance(BehaviorContext<PoolState> context)
    {
        var pool = context.Saga;
        foreach (var assignment in pool.Book.Assign())
        {
            _logger.LogInformation(
                "Pool {Pool}: lease {LeaseId} of {InstanceId} gets worker {WorkerId} ({Kind})",
                pool.Name, assignment.LeaseId, assignment.InstanceId, assignment.WorkerId, assignment.Reuse ? "re-use" : "hot");
            await context.Publish(new ReserveWorker(assignment.WorkerId, assignment.LeaseId, assignment.InstanceId, assignment.Thumbprint));
        }

        foreach (var workerId in pool.Book.Surplus(pool.HotTarget))
        {
            _logger.LogInformation("Pool {Pool}: retiring surplus hot worker {WorkerId} (hot target {HotTarget})", pool.Name, workerId, pool.HotTarget);
            await context.Publish(new WorkerRetirementApproved(workerId));
        }

        if (pool.BackoffUntil is { } until && until > _clock.GetUtcNow())
        {
            return;
        }

        var definition = Definition(pool.Name);
        var count = pool.Book.WorkersToStart(pool.HotTarget, pool.MaxWorkers);
        for (var i = 0; i < count; i++)
        {
            var workerId = NewId.NextGuid();
            pool.Book.Started(workerId, _clock.GetUtcNow());
            await context.Publish(new StartWorker(workerId, pool.Name, definition.Image, definition.Size));
        }

        if (count > 0)
        {
            _logger.LogInformation("Pool {Pool}: starting {Count} worker(s), {Live} live of {MaxWorkers}", pool.Name, count, pool.Book.Live, pool.MaxWorkers);
        }
    }
}
