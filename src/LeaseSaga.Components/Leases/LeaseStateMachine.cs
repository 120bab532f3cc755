using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Queries;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>
/// One per <c>LeaseId</c>: validate, take a worker (an idle one of the instance, else a hot one, else wait in line at
/// most the pool's allocation timeout), grant, then end on release or when the worker revokes it (max lease duration,
/// max worker age). Every request gets exactly one outcome; a repeat with the same id gets the same one again and
/// re-runs nothing; the same id from another instance gets <c>LeaseIdConflict</c> and changes nothing.
/// </summary>
public sealed class LeaseStateMachine : MassTransitStateMachine<LeaseState>
{
    static readonly Uri TrustQueue = CloudQueues.Address(CloudQueues.TrustWorker);

    readonly IOptionsMonitor<PoolsOptions> _pools;
    readonly IOptionsMonitor<LifecycleOptions> _lifecycle;
    readonly IWorkerCloud _cloud;
    readonly TimeProvider _clock;
    readonly ILogger<LeaseStateMachine> _logger;
    readonly TurnAwayWarnings _turnAways;
    readonly PoolHistory _history;

    public LeaseStateMachine(
        IOptionsMonitor<PoolsOptions> pools, IOptionsMonitor<LifecycleOptions> lifecycle, IWorkerCloud cloud, TimeProvider clock,
        TurnAwayWarnings turnAways, PoolHistory history, ILogger<LeaseStateMachine> logger)
    {
        _pools = pools;
        _lifecycle = lifecycle;
        _cloud = cloud;
        _clock = clock;
        _turnAways = turnAways;
        _history = history;
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
        Event(() => Revocation, e => Existing(e, m => m.LeaseId, "revocation of an unknown lease"));
        Event(() => WaitingRejection, e => Existing(e, m => m.LeaseId, "rejection of an unknown waiting lease"));
        Schedule(() => AllocationTimeout, x => x.AllocationTimeoutToken, s => s.Received = e => e.CorrelateById(m => m.Message.LeaseId));
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
                        .Then(c => c.Saga.AllocationTimeout = Definition(c.Saga.Pool).AllocationTimeout)
                        .ThenAsync(Allocate)
                        .If(c => c.Saga.Outcome == AllocationOutcome.Reused, reused => reused.TransitionTo(Granted))
                        .If(c => c.Saga.Outcome == AllocationOutcome.Trusting, trusting => trusting.TransitionTo(Allocating))
                        // The allocation timer runs only while the lease waits in line: most leases are served at once,
                        // and a timer set and cancelled within milliseconds is two trips through the scheduler for nothing.
                        .If(c => c.Saga.Outcome == AllocationOutcome.Waiting, waiting => waiting
                            .Schedule(AllocationTimeout, c => new LeaseAllocationTimedOut(c.Saga.CorrelationId), c => AllocationDeadline(c.Saga) - _clock.GetUtcNow())
                            .TransitionTo(WaitingForWorker))
                        .If(c => c.Saga.Outcome == AllocationOutcome.LineFull, full => full
                            .ThenAsync(c => Reject(c, LeaseRejectionReasons.NoCapacity,
                                $"pool '{c.Saga.Pool}' already has {Definition(c.Saga.Pool).MaxWaiting} leases waiting (Pools:{c.Saga.Pool}:MaxWaiting) and no idle worker of this instance"))
                            .TransitionTo(Rejected))
                        .If(c => c.Saga.Outcome == AllocationOutcome.InstanceAtMaxLeases, limited => limited
                            .ThenAsync(c => Reject(c, LeaseRejectionReasons.InstanceLimit,
                                $"instance '{c.Saga.InstanceId}' already has {Definition(c.Saga.Pool).MaxLeasesPerInstance} open leases in pool '{c.Saga.Pool}' (Pools:{c.Saga.Pool}:MaxLeasesPerInstance); release one first"))
                            .TransitionTo(Rejected))
                        .If(c => c.Saga.Outcome == AllocationOutcome.InstanceAtMaxWaiting, limited => limited
                            .ThenAsync(c => Reject(c, LeaseRejectionReasons.InstanceLimit,
                                $"instance '{c.Saga.InstanceId}' already has {Definition(c.Saga.Pool).MaxWaitingPerInstance} leases waiting in pool '{c.Saga.Pool}' (Pools:{c.Saga.Pool}:MaxWaitingPerInstance) and no idle worker"))
                            .TransitionTo(Rejected)),
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

        During(Allocating, WaitingForWorker,
            // Its worker failed: back in line by its arrival time, with the deadline it got on arrival.
            When(Queued)
                .Then(c => c.Saga.Waited = true)
                .If(c => c.Saga.AllocationTimeoutToken is null, unarmed => unarmed
                    .Schedule(AllocationTimeout, c => new LeaseAllocationTimedOut(c.Saga.CorrelationId), c => AllocationDeadline(c.Saga) - _clock.GetUtcNow()))
                .TransitionTo(WaitingForWorker),
            When(WorkerGranted)
                .Unschedule(AllocationTimeout)
                .ThenAsync(c => Grant(c, c.Message.WorkerId, c.Message.Address, c.Message.AgentThumbprint, c.Message.Reused, c.Message.ExpiresAt))
                .TransitionTo(Granted)
                .If(c => c.Saga.ReleaseRequested, released => released
                    .ThenAsync(EndLease)
                    .TransitionTo(Released)),
            When(Release, c => c.Message.InstanceId == c.Saga.InstanceId)
                .Then(c =>
                {
                    c.Saga.ReleaseRequested = true;
                    _logger.LogInformation("Lease {LeaseId} released before it was granted; it ends once granted", c.Saga.CorrelationId);
                }),
            // Out of line by its state; a worker already trusting for it goes idle for the instance when it arrives.
            GiveUp(When(AllocationTimeout.Received)),
            // Its pool was removed: a lease still in line ends now; one whose worker is already trusting is granted as usual.
            When(WaitingRejection, c => c.Saga.WorkerId is null)
                .Unschedule(AllocationTimeout)
                .ThenAsync(c => Reject(c, c.Message.Reason, c.Message.Detail))
                .TransitionTo(Rejected));

        During(Granted,
            When(Release, c => c.Message.InstanceId == c.Saga.InstanceId)
                .ThenAsync(EndLease)
                .TransitionTo(Released),
            // Redelivered: the process that granted may have died after saving and before publishing the grant.
            When(WorkerGranted, c => c.Message.WorkerId == c.Saga.WorkerId)
                .ThenAsync(c => Answer(c, GrantOf(c.Saga), c.Saga.ResponseAddress, c.Saga.RequestId)),
            When(WorkerGranted, c => c.Message.WorkerId != c.Saga.WorkerId)
                .ThenAsync(SendWorkerIdle),
            When(Revocation, c => c.Message.WorkerId == c.Saga.WorkerId)
                .ThenAsync(c => Revoke(c, c.Message.Reason))
                .TransitionTo(Revoked));

        // A worker that arrives after the lease ended goes idle for its instance, unused.
        During(Rejected, Released, Revoked,
            When(WorkerGranted)
                .ThenAsync(SendWorkerIdle));

        // From the sweep: the deadline of a lease with no timer passed (a lease served at once whose worker never came).
        During(Allocating, WaitingForWorker,
            GiveUp(When(AllocationTimeout.AnyReceived, c => c.GetSchedulingTokenId() is null && c.Saga.AllocationTimeoutToken is null)));

        // Redelivered: the rejection was saved but its answer may never have been published (the broker went away in
        // between: found by the chaos run). The timer's token is spent, so only AnyReceived still sees it; the same
        // answer goes out again, which a repeat of the request would also get.
        During(Rejected,
            When(AllocationTimeout.AnyReceived)
                .ThenAsync(c => Answer(c, RejectionOf(c.Saga), c.Saga.ResponseAddress, c.Saga.RequestId)));

        // Redelivered: a revocation whose answer may have died with the process that saved it is published again; so is
        // it for the instance's release, since a release of a revoked lease means the instance was never told (the drop test).
        During(Revoked,
            When(Revocation, c => c.Message.WorkerId == c.Saga.WorkerId)
                .Publish(c => RevocationOf(c.Saga)),
            When(Release, c => c.Message.InstanceId == c.Saga.InstanceId)
                .Publish(c => RevocationOf(c.Saga)));

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
    public Event<WorkerLeased> WorkerGranted { get; private set; } = null!;
    public Event<RevokeLease> Revocation { get; private set; } = null!;
    public Event<RejectWaitingLease> WaitingRejection { get; private set; } = null!;

    public Schedule<LeaseState, LeaseAllocationTimedOut> AllocationTimeout { get; private set; } = null!;

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

    /// <summary>
    /// The allocation deadline passed. A lease whose worker already serves it lost only the <see cref="WorkerLeased"/> that
    /// would have granted it (else the worker would stay leased to a rejected lease until its max duration): it is granted
    /// now. Any other gets <c>NoCapacity</c>.
    /// </summary>
    EventActivityBinder<LeaseState, LeaseAllocationTimedOut> GiveUp(EventActivityBinder<LeaseState, LeaseAllocationTimedOut> due)
        => due.IfElseAsync(async c => await ServingWorkerAsync(c) is not null,
            served => served
                .ThenAsync(async c =>
                {
                    var worker = (await ServingWorkerAsync(c))!;
                    await Grant(c, worker.CorrelationId, worker.Address!, worker.AgentThumbprint!, reused: worker.LeaseCount > 1, worker.LeaseExpiresAt!.Value);
                })
                .TransitionTo(Granted)
                .If(c => c.Saga.ReleaseRequested, released => released
                    .ThenAsync(EndLease)
                    .TransitionTo(Released)),
            unserved => unserved
                .ThenAsync(c => Reject(c, LeaseRejectionReasons.NoCapacity,
                    $"no worker of pool '{c.Saga.Pool}' became available within {c.Saga.AllocationTimeout}; the pool is at its maximum or its workers fail to start"))
                .TransitionTo(Rejected));

    static Task<WorkerState?> ServingWorkerAsync(BehaviorContext<LeaseState> c)
        => c.Saga.WorkerId is { } workerId
            ? c.GetServiceOrCreateInstance<Allocator>().ServingAsync(workerId, c.Saga.CorrelationId, c.CancellationToken)
            : Task.FromResult<WorkerState?>(null);

    (string Reason, string Detail)? Validate(LeaseRequested request) => LeaseRequestValidation.Check(request, _pools.CurrentValue.Pools.Keys);

    PoolOptions Definition(string pool) => _pools.CurrentValue.Pools[pool];

    /// <summary>When a lease still without a worker gets <c>NoCapacity</c>: its pool's allocation timeout after it arrived.</summary>
    public static DateTimeOffset AllocationDeadline(LeaseState lease) => lease.ReceivedAt + lease.AllocationTimeout;

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

    /// <summary>
    /// Within the instance's fair share of the pool, re-use first (an idle worker of the instance is granted at once), then
    /// a hot worker (told to trust the instance), else the lease waits in line while the pool starts a worker for it,
    /// unless the instance already has its share of the line or the line is full.
    /// </summary>
    async Task Allocate(BehaviorContext<LeaseState, LeaseRequested> c)
    {
        var lease = c.Saga;
        var definition = Definition(lease.Pool);
        var allocator = c.GetServiceOrCreateInstance<Allocator>();
        // A re-use counts too: the cap is on the leases an instance holds, however they are served.
        var share = await allocator.InstanceShareAsync(lease.Pool, lease.InstanceId, c.CancellationToken);
        if (share.Open >= definition.MaxLeasesPerInstance)
        {
            lease.Outcome = AllocationOutcome.InstanceAtMaxLeases;
            return;
        }

        var reapedUnhealthy = false;
        while (await allocator.ClaimIdleAsync(lease.Pool, lease.InstanceId, lease.ServerThumbprint, c.CancellationToken) is { } idle)
        {
            if (await IsDeadAsync(idle, c.CancellationToken))
            {
                // The claim skips it from now on: the next idle worker of the instance is tried, then a hot one, then the line.
                await allocator.ReapAsync(c, idle, ReapReasons.Unhealthy, "its VM is not running (checked before re-use)");
                reapedUnhealthy = true;
                continue;
            }

            var expiresAt = await allocator.LeaseAsync(idle, lease.CorrelationId, c.CancellationToken);
            if (allocator.NeedsTimer(idle, _clock.GetUtcNow()))
            {
                await c.Publish(new CheckWorkerDeadlines(idle.CorrelationId));
            }

            lease.Outcome = AllocationOutcome.Reused;
            await Grant(c, idle.CorrelationId, idle.Address!, idle.AgentThumbprint!, reused: true, expiresAt);
            await ReconcileIfShortAsync(c, allocator, reapedUnhealthy);
            return;
        }

        // Checked before the pool's lock, as the full line below: while an instance's leases wait, no hot worker is left.
        if (share.Waiting >= definition.MaxWaitingPerInstance)
        {
            lease.Outcome = AllocationOutcome.InstanceAtMaxWaiting;
            await ReconcileIfShortAsync(c, allocator, reapedUnhealthy);
            return;
        }

        // A full line turns the lease away before it takes the pool's lock: a flood's refusals then wait on nothing.
        var maxWaiting = definition.MaxWaiting;
        if (await allocator.WaitingAsync(lease.Pool, c.CancellationToken) >= maxWaiting)
        {
            if (_turnAways.ShouldWarn(lease.Pool, out var unreported))
            {
                _logger.LogWarning(
                    "Pool {Pool}: lease {LeaseId} of {InstanceId} turned away, {MaxWaiting} leases already wait; {Unreported} more turned away since the previous warning (at most one every {IntervalSeconds} s per pool in this process)",
                    lease.Pool, lease.CorrelationId, lease.InstanceId, maxWaiting, unreported, TurnAwayWarnings.Interval.TotalSeconds);
            }

            lease.Outcome = AllocationOutcome.LineFull;
            await ReconcileIfShortAsync(c, allocator, reapedUnhealthy);
            return;
        }

        // Shared: leases take hot workers and join the line side by side; starting workers is the pool keeper's, alone.
        var pool = await allocator.LockPoolAsync(lease.Pool, c.CancellationToken, shared: true);
        if (await allocator.ClaimReadyAsync(lease.Pool, c.CancellationToken, pool.Image) is { } hot)
        {
            await allocator.AssignAsync(c, hot, lease);
            lease.Outcome = AllocationOutcome.Trusting;
        }
        else
        {
            lease.Waited = true;
            lease.Outcome = AllocationOutcome.Waiting;
        }

        if (await allocator.MayNeedWorkersAsync(pool, lease, c.CancellationToken))
        {
            await c.Publish(new ReconcilePool(lease.Pool));
        }
    }

    /// <summary>
    /// Whether an idle worker's VM is known not to run. Only a worker idle longer than <c>Lifecycle:HealthCheckAfterIdle</c>
    /// is checked, so a re-use soon after a release costs nothing more. A cloud that cannot tell in time leaves it
    /// leased: an outage of the cloud's API must not delete every idle worker.
    /// </summary>
    async Task<bool> IsDeadAsync(WorkerState idle, CancellationToken cancellationToken)
    {
        var settings = _lifecycle.CurrentValue;
        var idleFor = _clock.GetUtcNow() - (idle.LastLeaseEndedAt ?? idle.ProvisionedAt ?? idle.CreatedAt);
        if (settings.HealthCheckAfterIdle > TimeSpan.Zero && idleFor <= settings.HealthCheckAfterIdle)
        {
            return false;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(settings.HealthCheckTimeout);
        try
        {
            var health = await _cloud.CheckAsync(idle.CorrelationId, timeout.Token);
            if (health == VmHealth.NotRunning)
            {
                _logger.LogWarning("Worker {WorkerId} of {Pool} (instance {InstanceId}) is idle but its VM is not running; it is reaped instead of leased",
                    idle.CorrelationId, idle.Pool, idle.TrustedInstanceId);
            }

            return health == VmHealth.NotRunning;
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning(e, "Worker {WorkerId} of {Pool} (instance {InstanceId}): its VM's health is unknown (no answer within {Timeout}); leased anyway",
                idle.CorrelationId, idle.Pool, idle.TrustedInstanceId, settings.HealthCheckTimeout);
            return false;
        }
    }

    /// <summary>A worker reaped as unhealthy no longer counts against <c>MaxWorkers</c>: the pool keeper fills the room if a waiting lease or the hot target needs it.</summary>
    static async Task ReconcileIfShortAsync(BehaviorContext<LeaseState> c, Allocator allocator, bool reapedUnhealthy)
    {
        if (reapedUnhealthy && await allocator.MayNeedWorkersAsync(c.Saga.Pool, c.CancellationToken))
        {
            await c.Publish(new ReconcilePool(c.Saga.Pool));
        }
    }

    async Task Grant(BehaviorContext<LeaseState> c, Guid workerId, string address, string agentThumbprint, bool reused, DateTimeOffset expiresAt)
    {
        var lease = c.Saga;
        // Whole milliseconds: a repeat answers from the stored row, so it must be the very grant the first answer was.
        var now = Allocator.WholeMilliseconds(_clock.GetUtcNow());
        lease.WorkerId = workerId;
        lease.WorkerAddress = address;
        lease.WorkerThumbprint = agentThumbprint;
        lease.Reused = reused;
        lease.GrantedAt = now;
        lease.ExpiresAt = expiresAt;
        var path = lease.Reused ? "reuse" : lease.Waited ? "cold" : "hot";
        DwTelemetry.LeaseWait.Record((now - lease.ReceivedAt).TotalSeconds, new("pool", lease.Pool), new("path", path));
        _history.RecordLeaseWait(lease.Pool, path, now - lease.ReceivedAt);
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
        await c.Publish(RevocationOf(lease));
    }

    /// <summary>A lease revoked before it had a worker (its instance removed) carries an empty worker id.</summary>
    static LeaseRevoked RevocationOf(LeaseState lease) => new(lease.CorrelationId, lease.InstanceId, lease.WorkerId ?? Guid.Empty, lease.RevokeReason!);

    async Task EndLease<T>(BehaviorContext<LeaseState, T> c)
        where T : class
    {
        var lease = c.Saga;
        lease.EndedAt = _clock.GetUtcNow();
        _logger.LogInformation("Lease {LeaseId} of {InstanceId} released worker {WorkerId}", lease.CorrelationId, lease.InstanceId, lease.WorkerId);
        await c.GetServiceOrCreateInstance<Allocator>().EndLeaseAsync(c, lease.WorkerId!.Value, lease.CorrelationId);
    }

    /// <summary>A worker this lease does not hold (it ended, or has another) goes idle for its instance, unused.</summary>
    async Task SendWorkerIdle(BehaviorContext<LeaseState, WorkerLeased> c)
    {
        _logger.LogInformation("Lease {LeaseId} of {InstanceId} in {State} does not take worker {WorkerId}; it goes idle",
            c.Saga.CorrelationId, c.Saga.InstanceId, c.Saga.CurrentState, c.Message.WorkerId);
        await c.GetServiceOrCreateInstance<Allocator>().EndLeaseAsync(c, c.Message.WorkerId, c.Message.LeaseId);
    }

    /// <summary>The recorded outcome once more; nothing is re-run. A lease still being allocated answers when it is.</summary>
    async Task AnswerAgain(BehaviorContext<LeaseState, LeaseRequested> c)
    {
        var lease = c.Saga;
        object? outcome = lease.RejectReason is not null
            ? RejectionOf(lease)
            : lease.GrantedAt is not null ? GrantOf(lease) : null;
        if (outcome is not null)
        {
            await Answer(c, outcome, c.ResponseAddress, c.RequestId);
        }
        else if (lease.WorkerId is { } workerId && lease.EndedAt is null)
        {
            // Still trusting: the TrustWorker may have died with the process that chose the worker (trusting the same
            // instance again is a no-op to the worker's agent).
            await c.Send(TrustQueue, new TrustWorker(workerId, lease.InstanceId, lease.ServerThumbprint));
        }
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
