using MassTransit;

namespace DynamicWorkers.Contracts.Internal;

// Between the three state machines of the LeaseSaga host: lease (one per LeaseId), pool (one per pool,
// the single writer of allocation decisions) and worker (one per VM).

/// <summary>Lease → pool: find this lease a worker (re-use first, then hot), or queue it first come, first served.</summary>
[MessageUrn("DynamicWorkers.Internal:AllocateWorker")]
public sealed record AllocateWorker(string Pool, Guid LeaseId, string InstanceId, string Thumbprint, DateTimeOffset RequestedAt);

/// <summary>Lease → pool: stop looking (the lease timed out or was released while waiting).</summary>
[MessageUrn("DynamicWorkers.Internal:CancelAllocation")]
public sealed record CancelAllocation(string Pool, Guid LeaseId);

/// <summary>Pool → lease: no worker yet; the lease waits in line while the pool provisions.</summary>
[MessageUrn("DynamicWorkers.Internal:LeaseQueued")]
public sealed record LeaseQueued(Guid LeaseId, int Position);

/// <summary>Pool → lease: the pool's waiting line is full and no worker can serve the lease at once: reject it now.</summary>
[MessageUrn("DynamicWorkers.Internal:AllocationRefused")]
public sealed record AllocationRefused(Guid LeaseId, string Detail);

/// <summary>Pool → worker: you are this lease's; trust its instance (or, if you already do, go straight to work).</summary>
[MessageUrn("DynamicWorkers.Internal:ReserveWorker")]
public sealed record ReserveWorker(Guid WorkerId, Guid LeaseId, string InstanceId, string Thumbprint);

/// <summary>Pool → worker (creates the worker's saga): provision a VM for the pool.</summary>
[MessageUrn("DynamicWorkers.Internal:StartWorker")]
public sealed record StartWorker(Guid WorkerId, string Pool, string Image, string Size);

/// <summary>Pool → worker: you were taken off the pool's lists, go ahead and retire.</summary>
[MessageUrn("DynamicWorkers.Internal:WorkerRetirementApproved")]
public sealed record WorkerRetirementApproved(Guid WorkerId);

/// <summary>Worker → lease: the worker trusts the instance and is the lease's.</summary>
[MessageUrn("DynamicWorkers.Internal:WorkerLeased")]
public sealed record WorkerLeased(Guid LeaseId, Guid WorkerId, string Address, string AgentThumbprint, bool Reused);

/// <summary>Worker → lease: the worker is going away under the lease (max worker age, lost).</summary>
[MessageUrn("DynamicWorkers.Internal:RevokeLease")]
public sealed record RevokeLease(Guid LeaseId, Guid WorkerId, string Reason);

/// <summary>Lease → worker: the lease ended; go idle for the same instance, or be deprovisioned.</summary>
[MessageUrn("DynamicWorkers.Internal:EndLease")]
public sealed record EndLease(Guid WorkerId, Guid LeaseId, bool Deprovision);

/// <summary>Worker → pool: provisioned and trusting no one: a hot worker.</summary>
[MessageUrn("DynamicWorkers.Internal:WorkerReady")]
public sealed record WorkerReady(string Pool, Guid WorkerId);

/// <summary>
/// Worker → pool: its lease <see cref="LeaseId"/> ended; it stays available to the instance it trusts. The lease id
/// lets the pool tell a late repeat of this notice from the end of the worker's next lease.
/// </summary>
[MessageUrn("DynamicWorkers.Internal:WorkerIdle")]
public sealed record WorkerIdle(string Pool, Guid WorkerId, string InstanceId, Guid LeaseId);

/// <summary>
/// Worker → pool: an idle or hot worker reached its idle timeout or max age and asks to be taken off the
/// lists. <see cref="LastLeaseId"/> is the lease it last served (already ended), so the pool can tell an old
/// assignment from a new one still on its way.
/// </summary>
[MessageUrn("DynamicWorkers.Internal:WorkerRetirementRequested")]
public sealed record WorkerRetirementRequested(string Pool, Guid WorkerId, Guid? LastLeaseId);

/// <summary>
/// Worker → pool: the worker no longer counts (it is being deleted). <see cref="Failed"/> when it failed to
/// provision or to trust (counts toward the pool's backoff); <see cref="RequeueLeaseId"/> is the lease it was
/// about to serve, which goes back to the head of the line.
/// </summary>
[MessageUrn("DynamicWorkers.Internal:WorkerGone")]
public sealed record WorkerGone(string Pool, Guid WorkerId, bool Failed, string Reason, Guid? RequeueLeaseId);

/// <summary>Start-up → pool: create the pool from configuration if it is new (a persisted size is kept) and top it up.</summary>
[MessageUrn("DynamicWorkers.Internal:ReconcilePool")]
public sealed record ReconcilePool(string Pool);

// Timeouts, delivered by the durable scheduler.

[MessageUrn("DynamicWorkers.Internal:LeaseAllocationTimedOut")]
public sealed record LeaseAllocationTimedOut(Guid LeaseId);

[MessageUrn("DynamicWorkers.Internal:LeaseMaxDurationReached")]
public sealed record LeaseMaxDurationReached(Guid LeaseId);

[MessageUrn("DynamicWorkers.Internal:WorkerProvisioningTimedOut")]
public sealed record WorkerProvisioningTimedOut(Guid WorkerId);

[MessageUrn("DynamicWorkers.Internal:WorkerTrustTimedOut")]
public sealed record WorkerTrustTimedOut(Guid WorkerId);

[MessageUrn("DynamicWorkers.Internal:WorkerIdleTimedOut")]
public sealed record WorkerIdleTimedOut(Guid WorkerId);

[MessageUrn("DynamicWorkers.Internal:WorkerMaxAgeReached")]
public sealed record WorkerMaxAgeReached(Guid WorkerId);

[MessageUrn("DynamicWorkers.Internal:PoolBackoffEnded")]
public sealed record PoolBackoffEnded(string Pool);

/// <summary>
/// Reaper → LeaseSaga, on every sweep: re-deliver every timeout whose deadline passed more than
/// <see cref="Grace"/> ago without its timer firing (the durable scheduler's safety net).
/// </summary>
[MessageUrn("DynamicWorkers.Internal:SweepOverdueTimers")]
public sealed record SweepOverdueTimers(TimeSpan Grace);
