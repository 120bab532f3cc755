using MassTransit;

namespace DynamicWorkers.LeaseSaga.Workers;

/// <summary>One worker VM, from the request to provision it until it is deleted.</summary>
public sealed class WorkerState : SagaStateMachineInstance, ISagaVersion
{
    public Guid CorrelationId { get; set; }
    public int Version { get; set; }
    public string CurrentState { get; set; } = "";

    public string Pool { get; set; } = "";
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? ProvisionedAt { get; set; }
    public string? Address { get; set; }
    public string? AgentThumbprint { get; set; }

    /// <summary>Set once, at the first reservation, and never changed: a worker trusts one instance for its whole life.</summary>
    public string? TrustedInstanceId { get; set; }
    public string? TrustedThumbprint { get; set; }

    public Guid? CurrentLeaseId { get; set; }

    /// <summary>The lease it served last, once that lease ended.</summary>
    public Guid? LastLeaseId { get; set; }
    public DateTimeOffset? LastLeaseEndedAt { get; set; }
    public int LeaseCount { get; set; }

    /// <summary>
    /// The idle deadline (from the last release) and when the max-age timer is due; the reaper's sweep uses them if a timer
    /// was missed. An idle timer left standing through re-uses may be due earlier: it re-arms itself for the rest.
    /// </summary>
    public DateTimeOffset? IdleDeadline { get; set; }
    public DateTimeOffset? MaxAgeDeadline { get; set; }

    /// <summary>When the trust step began, and when deletion began: the sweep re-drives either if it stalls.</summary>
    public DateTimeOffset? TrustStartedAt { get; set; }
    public DateTimeOffset? ReapStartedAt { get; set; }

    /// <summary>Why it is being deleted: idle, max_age, max_lease, failed, orphan.</summary>
    public string? ReapReason { get; set; }

    public Guid? ProvisioningTimeoutToken { get; set; }
    public Guid? TrustTimeoutToken { get; set; }
    public Guid? IdleTimeoutToken { get; set; }
    public Guid? MaxAgeToken { get; set; }

    /// <summary>Set while one message is handled (never stored): the trust step moved the max-age deadline, so the timer is re-armed.</summary>
    public bool MaxAgeMoved { get; set; }

    /// <summary>Set while one message is handled (never stored): the release needs a new idle timer, none stands or it is due too late.</summary>
    public bool IdleTimerMoved { get; set; }
}
