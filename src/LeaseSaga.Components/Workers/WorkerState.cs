using MassTransit;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>
/// One worker VM, from the request to provision it until it is deleted. Its row is the one record of whom it serves:
/// a lease claims an idle or ready worker by locking and changing this row in its own transaction.
/// </summary>
public sealed class WorkerState : SagaStateMachineInstance, ISagaVersion
{
    public Guid CorrelationId { get; set; }
    public int Version { get; set; }
    public string CurrentState { get; set; } = "";

    public string Pool { get; set; } = "";

    /// <summary>The image it was provisioned from: the pool's when it was started.</summary>
    public string Image { get; set; } = "";
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? ProvisionedAt { get; set; }
    public string? Address { get; set; }
    public string? AgentThumbprint { get; set; }

    /// <summary>
    /// Set once, when it is first claimed, and never changed: a worker trusts one instance for its whole life.
    /// </summary>
    public string? TrustedInstanceId { get; set; }
    public string? TrustedThumbprint { get; set; }

    public Guid? CurrentLeaseId { get; set; }

    /// <summary>When the current lease is revoked if it is not released first.</summary>
    public DateTimeOffset? LeaseExpiresAt { get; set; }

    /// <summary>The lease it served last, once that lease ended.</summary>
    public Guid? LastLeaseId { get; set; }
    public DateTimeOffset? LastLeaseEndedAt { get; set; }
    public int LeaseCount { get; set; }

    public DateTimeOffset? IdleDeadline { get; set; }
    public DateTimeOffset? MaxAgeDeadline { get; set; }

    /// <summary>When the trust step began, and when deletion began: the sweep re-drives either if it stalls.</summary>
    public DateTimeOffset? TrustStartedAt { get; set; }
    public DateTimeOffset? ReapStartedAt { get; set; }

    /// <summary>Why it is being deleted (<see cref="ReapReasons"/>).</summary>
    public string? ReapReason { get; set; }

    /// <summary>
    /// The one outstanding timer and when it is due; a later deadline leaves it standing, an earlier one replaces it.
    /// </summary>
    public Guid? TimerToken { get; set; }
    public DateTimeOffset? TimerDueAt { get; set; }
}

/// <summary>The worker states, by name, as stored and as queried by allocation.</summary>
public static class WorkerStates
{
    public const string Provisioning = nameof(Provisioning);
    public const string Ready = nameof(Ready);
    public const string Trusting = nameof(Trusting);
    public const string Leased = nameof(Leased);
    public const string Idle = nameof(Idle);
    public const string Reaping = nameof(Reaping);

    /// <summary>Workers that count against <c>MaxWorkers</c>: every one not being deleted.</summary>
    public static readonly string[] Live = [Provisioning, Ready, Trusting, Leased, Idle];

    /// <summary>Workers the pool keeps for leases to come: provisioning or ready, trusting no one.</summary>
    public static readonly string[] Spare = [Provisioning, Ready];
}

/// <summary>The <c>reason</c> tag of <c>dw_workers_reaped_total</c>.</summary>
public static class ReapReasons
{
    public const string Idle = "idle";
    public const string MaxAge = "max_age";
    public const string MaxLease = "max_lease";
    public const string Failed = "failed";
    public const string InstanceRemoved = "instance_removed";

    /// <summary>Its VM was found not running when the worker was about to be leased again.</summary>
    public const string Unhealthy = "unhealthy";

    /// <summary>Replaced by a worker of the pool's newer image.</summary>
    public const string Image = "image";
}
