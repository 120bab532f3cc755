using DynamicWorkers.Contracts;

namespace DynamicWorkers.Client;

/// <summary>
/// The service's answer to a lease request: <see cref="Granted"/> or <see cref="Rejected"/>, nothing else.
/// </summary>
public abstract record LeaseResult
{
    LeaseResult()
    {
    }

    public abstract Guid LeaseId { get; }

    /// <summary>
    /// A worker now trusts the instance; release it with <see cref="DynamicWorkersClient.ReleaseAsync"/> when the task
    /// ends.
    /// </summary>
    public sealed record Granted(LeaseGranted Lease) : LeaseResult
    {
        public override Guid LeaseId => Lease.LeaseId;
    }

    /// <summary>No worker; <see cref="LeaseRejected.Reason"/> is one of <see cref="LeaseRejectionReasons"/>.</summary>
    public sealed record Rejected(LeaseRejected Rejection) : LeaseResult
    {
        public override Guid LeaseId => Rejection.LeaseId;
    }
}
