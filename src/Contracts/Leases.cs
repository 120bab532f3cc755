using MassTransit;

namespace DynamicWorkers.Contracts;

// The wire names are pinned by [MessageUrn] so that renaming a type never changes the contract.

/// <summary>
/// An instance asks for a worker. <see cref="LeaseId"/> is chosen by the instance and is the idempotency key.
/// </summary>
[MessageUrn("DynamicWorkers.Contracts:LeaseRequested")]
public sealed record LeaseRequested(
    Guid LeaseId,
    string InstanceId,
    string ServerThumbprint,
    string Pool,
    string? TaskId,
    DateTimeOffset RequestedAt);

/// <summary>
/// A worker now trusts the instance's thumbprint and is the instance's until released, revoked or expired.
/// </summary>
[MessageUrn("DynamicWorkers.Contracts:LeaseGranted")]
public sealed record LeaseGranted(
    Guid LeaseId,
    string InstanceId,
    Guid WorkerId,
    string WorkerAddress,
    string WorkerThumbprint,
    bool Reused,
    DateTimeOffset GrantedAt,
    DateTimeOffset ExpiresAt);

/// <summary>The lease was not granted; <see cref="Reason"/> is one of <see cref="LeaseRejectionReasons"/>.</summary>
[MessageUrn("DynamicWorkers.Contracts:LeaseRejected")]
public sealed record LeaseRejected(
    Guid LeaseId,
    string InstanceId,
    string Reason,
    string Detail);

/// <summary>The instance's task ended; the worker goes idle, still trusting only that instance.</summary>
[MessageUrn("DynamicWorkers.Contracts:LeaseReleased")]
public sealed record LeaseReleased(
    Guid LeaseId,
    string InstanceId);

/// <summary>
/// The service ended a lease the instance did not release; <see cref="Reason"/> is one of
/// <see cref="LeaseRevocationReasons"/>.
/// </summary>
[MessageUrn("DynamicWorkers.Contracts:LeaseRevoked")]
public sealed record LeaseRevoked(
    Guid LeaseId,
    string InstanceId,
    Guid WorkerId,
    string Reason);

public static class LeaseRejectionReasons
{
    public const string InvalidRequest = nameof(InvalidRequest);
    public const string UnknownPool = nameof(UnknownPool);
    public const string NoCapacity = nameof(NoCapacity);
    public const string LeaseIdConflict = nameof(LeaseIdConflict);

    /// <summary>The request's <c>InstanceId</c> is not the sender's authenticated identity.</summary>
    public const string Unauthorized = nameof(Unauthorized);

    /// <summary>
    /// The instance is at its fair share of the pool: <c>MaxLeasesPerInstance</c> open leases or
    /// <c>MaxWaitingPerInstance</c> waiting.
    /// </summary>
    public const string InstanceLimit = nameof(InstanceLimit);
}

public static class LeaseRevocationReasons
{
    public const string MaxLeaseDuration = nameof(MaxLeaseDuration);
    public const string MaxWorkerAge = nameof(MaxWorkerAge);
    public const string WorkerLost = nameof(WorkerLost);

    /// <summary>
    /// The operator offboarded the instance (<c>RemoveInstance</c>); a lease not yet granted carries an empty
    /// <c>WorkerId</c>.
    /// </summary>
    public const string InstanceRemoved = nameof(InstanceRemoved);
}
