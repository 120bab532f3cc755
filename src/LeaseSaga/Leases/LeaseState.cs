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

    /// <summary>Where the latest request for this lease wants its answer (a retry may come from a new client).</summary>
    public Uri? ResponseAddress { get; set; }
    public Guid? RequestId { get; set; }

    /// <summary>The pool's allocation timeout when the lease arrived (a later configuration change does not strand it).</summary>
    public TimeSpan AllocationTimeout { get; set; }

    /// <summary>The pool had no worker at once: the lease waited for one to be provisioned.</summary>
    public bool Waited { get; set; }

    /// <summary>The instance released the lease before it was granted: it ends as soon as it is.</summary>
    public bool ReleaseRequested { get; set; }

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
    public Guid? MaxDurationToken { get; set; }
}
