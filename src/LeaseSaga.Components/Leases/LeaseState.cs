using MassTransit;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>One lease, kept after it ends so a repeated request with the same id gets the same answer.</summary>
public sealed class LeaseState : SagaStateMachineInstance, ISagaVersion
{
    public Guid CorrelationId { get; set; }
    public int Version { get; set; }
    public string CurrentState { get; set; } = "";

    public string InstanceId { get; set; } = "";
    public string ServerThumbprint { get; set; } = "";
    public string Pool { get; set; } = "";
    public string? TaskId { get; set; }
    public DateTimeOffset RequestedAt { get; set; }
    public DateTimeOffset ReceivedAt { get; set; }

    /// <summary>
    /// Where the latest request for this lease wants its answer (a retry may come from a new client).
    /// </summary>
    public Uri? ResponseAddress { get; set; }
    public Guid? RequestId { get; set; }

    /// <summary>
    /// The pool's allocation timeout when the lease arrived (a later configuration change does not strand it).
    /// </summary>
    public TimeSpan AllocationTimeout { get; set; }

    /// <summary>The pool had no worker at once: the lease waited for one to be provisioned.</summary>
    public bool Waited { get; set; }

    /// <summary>The instance released the lease before it was granted: it ends as soon as it is.</summary>
    public bool ReleaseRequested { get; set; }

    /// <summary>
    /// The worker chosen for the lease (set while it trusts the instance, before the grant) or granted.
    /// </summary>
    public Guid? WorkerId { get; set; }
    public string? WorkerAddress { get; set; }
    public string? WorkerThumbprint { get; set; }
    public bool Reused { get; set; }
    public DateTimeOffset? GrantedAt { get; set; }
    public DateTimeOffset? ExpiresAt { get; set; }

    public string? RejectReason { get; set; }
    public string? RejectDetail { get; set; }
    public string? RevokeReason { get; set; }
    public DateTimeOffset? EndedAt { get; set; }

    public Guid? AllocationTimeoutToken { get; set; }

    /// <summary>Set while the request is handled (never stored): how allocation answered it.</summary>
    public AllocationOutcome Outcome { get; set; }
}

/// <summary>What allocation did with a new lease.</summary>
public enum AllocationOutcome
{
    None,
    Reused,
    Trusting,
    Waiting,

    /// <summary>The worker chosen confirmed its trust in the instance: the lease is granted.</summary>
    Trusted,
    LineFull,

    /// <summary>The instance already has <c>MaxLeasesPerInstance</c> open leases in the pool.</summary>
    InstanceAtMaxLeases,

    /// <summary>
    /// The lease would wait, and the instance already has <c>MaxWaitingPerInstance</c> waiting in the pool.
    /// </summary>
    InstanceAtMaxWaiting,
}

/// <summary>The lease states, by name, as stored and as queried by allocation.</summary>
public static class LeaseStates
{
    public const string Allocating = nameof(Allocating);
    public const string WaitingForWorker = nameof(WaitingForWorker);
    public const string Granted = nameof(Granted);
    public const string Released = nameof(Released);
    public const string Revoked = nameof(Revoked);
    public const string Rejected = nameof(Rejected);

    /// <summary>Not granted yet: the waiting line is the leases in these states with no worker chosen.</summary>
    public static readonly string[] Waiting = [Allocating, WaitingForWorker];
}

/// <summary>The <c>path</c> tag of <c>dw_lease_wait_seconds</c>: how the granted worker was found.</summary>
public static class LeaseWaitPaths
{
    public const string Tag = "path";

    /// <summary>An idle worker of the instance, granted at once.</summary>
    public const string Reuse = "reuse";

    /// <summary>A hot worker that trusted the instance first.</summary>
    public const string Hot = "hot";

    /// <summary>The lease waited in line for a new worker.</summary>
    public const string Cold = "cold";
}
