using MassTransit;

namespace DynamicWorkers.Contracts;

/// <summary>Overrides the lifecycle limits of one instance; a <c>null</c> field leaves that limit unchanged.</summary>
[MessageUrn("DynamicWorkers.Contracts:SetInstanceLifecycle")]
public sealed record SetInstanceLifecycle(
    string InstanceId,
    TimeSpan? IdleTimeout,
    TimeSpan? MaxWorkerAge,
    TimeSpan? MaxLeaseDuration);

/// <summary>
/// Offboards an instance: every open lease of it is revoked (<see cref="LeaseRevocationReasons.InstanceRemoved"/>), its
/// workers are deleted and its lifecycle settings dropped. Idempotent; answered and published as
/// <see cref="InstanceRemoved"/>.
/// </summary>
[MessageUrn("DynamicWorkers.Contracts:RemoveInstance")]
public sealed record RemoveInstance(string InstanceId, string? Reason);

/// <summary>What <see cref="RemoveInstance"/> did: a repeat finds nothing left and answers zeros.</summary>
[MessageUrn("DynamicWorkers.Contracts:InstanceRemoved")]
public sealed record InstanceRemoved(string InstanceId, int LeasesRevoked, int WorkersDeleted);

/// <summary>Changes a pool's size at run time; takes effect at once and is persisted.</summary>
[MessageUrn("DynamicWorkers.Contracts:SetPoolSize")]
public sealed record SetPoolSize(
    string Pool,
    int HotTarget,
    int MaxWorkers);

/// <summary>
/// Changes a pool's image at run time (persisted): its hot and idle workers of another image are replaced within the
/// pool's rollout surge, leased ones once their lease ends, never interrupting one. Progress is in
/// <see cref="PoolSummary.OutdatedWorkers"/>.
/// </summary>
[MessageUrn("DynamicWorkers.Contracts:SetPoolImage")]
public sealed record SetPoolImage(string Pool, string Image);

/// <summary>
/// Asks for the status of one pool, or of all pools when <see cref="Pool"/> is null. Answered with
/// <see cref="PoolStatus"/>.
/// </summary>
[MessageUrn("DynamicWorkers.Contracts:GetPoolStatus")]
public sealed record GetPoolStatus(string? Pool);

[MessageUrn("DynamicWorkers.Contracts:PoolStatus")]
public sealed record PoolStatus(IReadOnlyList<PoolSummary> Pools);

/// <param name="Image">the image new workers get</param>
/// <param name="OutdatedWorkers">live workers of an older image, still to be replaced: 0 once a rollout
/// finished</param>
public sealed record PoolSummary(
    string Pool,
    IReadOnlyDictionary<string, int> WorkersByState,
    int HotTarget,
    int MaxWorkers,
    int WaitingLeases,
    string Image,
    IReadOnlyList<string> Tools,
    int OutdatedWorkers);

/// <summary>
/// Lists workers, optionally of one pool and/or trusting one instance. Answered with <see cref="WorkerList"/>.
/// </summary>
[MessageUrn("DynamicWorkers.Contracts:GetWorkers")]
public sealed record GetWorkers(string? Pool, string? InstanceId);

[MessageUrn("DynamicWorkers.Contracts:WorkerList")]
public sealed record WorkerList(IReadOnlyList<WorkerSummary> Workers);

public sealed record WorkerSummary(
    Guid WorkerId,
    string Pool,
    string State,
    string? TrustedInstanceId,
    Guid? CurrentLeaseId,
    DateTimeOffset ProvisionedAt,
    DateTimeOffset? LastLeaseEndedAt,
    int LeaseCount);

/// <summary>
/// Lists leases, optionally of one pool and/or one instance: open ones first, then the most recently ended. Answered
/// with <see cref="LeaseList"/>; an instance may list only its own.
/// </summary>
[MessageUrn("DynamicWorkers.Contracts:GetLeases")]
public sealed record GetLeases(string? Pool, string? InstanceId);

[MessageUrn("DynamicWorkers.Contracts:LeaseList")]
public sealed record LeaseList(IReadOnlyList<LeaseSummary> Leases);

public sealed record LeaseSummary(
    Guid LeaseId,
    string InstanceId,
    string Pool,
    string State,
    string? TaskId,
    DateTimeOffset ReceivedAt,
    bool Waited,
    Guid? WorkerId,
    bool Reused,
    DateTimeOffset? GrantedAt,
    DateTimeOffset? ExpiresAt,
    DateTimeOffset? EndedAt,
    string? Reason);
