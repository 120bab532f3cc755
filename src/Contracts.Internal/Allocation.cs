using MassTransit;

namespace DynamicWorkers.Contracts.Internal;

// Between the two state machines of the LeaseSaga host, lease (one per LeaseId) and worker (one per VM). Allocation
// itself sends no message: a lease claims a worker row, or a ready worker claims the oldest waiting lease row, in the
// transaction that saves the saga (see "Allocation" in docs/how-it-works.md).

/// <summary>
/// Worker → lease: the worker trusts the instance and is the lease's until <see cref="ExpiresAt"/>.
/// </summary>
[MessageUrn("DynamicWorkers.Internal:WorkerLeased")]
public sealed record WorkerLeased(Guid LeaseId, Guid WorkerId, string Address, string AgentThumbprint, bool Reused,
    DateTimeOffset ExpiresAt);

/// <summary>
/// Worker → lease: the worker is going away under the lease (max lease duration, max worker age, lost).
/// </summary>
[MessageUrn("DynamicWorkers.Internal:RevokeLease")]
public sealed record RevokeLease(Guid LeaseId, Guid WorkerId, string Reason);

/// <summary>
/// Worker → lease: the worker chosen for the lease failed; the lease is back in line by its arrival time.
/// </summary>
[MessageUrn("DynamicWorkers.Internal:LeaseQueued")]
public sealed record LeaseQueued(Guid LeaseId);

/// <summary>
/// Pool keeper → lease: a lease still waiting in line ends rejected (its pool was removed from configuration); one
/// that has a worker meanwhile ignores it.
/// </summary>
[MessageUrn("DynamicWorkers.Internal:RejectWaitingLease")]
public sealed record RejectWaitingLease(Guid LeaseId, string Reason, string Detail);

/// <summary>
/// Lease or sweep → worker: act on any deadline that passed and arm the timer for the rest (a lease moved a deadline
/// earlier than the standing timer; a step with no timer of its own, such as trust, is overdue; a timer was lost).
/// </summary>
[MessageUrn("DynamicWorkers.Internal:CheckWorkerDeadlines")]
public sealed record CheckWorkerDeadlines(Guid WorkerId);

/// <summary>
/// Start-up, or a lease that took a hot worker or joined the line → pool keeper: create the pool from configuration
/// if it is new (a persisted size is kept) and top it up.
/// </summary>
[MessageUrn("DynamicWorkers.Internal:ReconcilePool")]
public sealed record ReconcilePool(string Pool);

/// <summary>
/// The hot-target job (every minute, once per cluster) → pool keeper: set an adaptive pool's hot target from its
/// demand.
/// </summary>
[MessageUrn("DynamicWorkers.Internal:EvaluateHotTarget")]
public sealed record EvaluateHotTarget(string Pool);

// Timers, delivered by the durable scheduler. Each saga keeps at most one outstanding, due at its earliest deadline.

[MessageUrn("DynamicWorkers.Internal:LeaseAllocationTimedOut")]
public sealed record LeaseAllocationTimedOut(Guid LeaseId);

[MessageUrn("DynamicWorkers.Internal:WorkerTimerDue")]
public sealed record WorkerTimerDue(Guid WorkerId);

[MessageUrn("DynamicWorkers.Internal:PoolBackoffEnded")]
public sealed record PoolBackoffEnded(string Pool);

/// <summary>
/// Reaper → LeaseSaga, on every sweep: re-deliver every timer whose deadline passed more than <see cref="Grace"/>
/// ago without it firing (the durable scheduler's safety net), and re-drive steps that normally take seconds and
/// so run without a timer (trust, a lost start).
/// </summary>
[MessageUrn("DynamicWorkers.Internal:SweepOverdueTimers")]
public sealed record SweepOverdueTimers(TimeSpan Grace);
