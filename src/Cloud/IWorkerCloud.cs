namespace DynamicWorkers.Cloud;

/// <summary>
/// The port through which the service creates, commands and deletes worker VMs. Adapters: the local
/// simulator (tests, Standalone) and Azure (production). Every call is idempotent per worker id, because
/// the commands that drive it may be redelivered.
/// </summary>
public interface IWorkerCloud
{
    /// <summary>Creates (or finds, if it already exists) the VM of a worker and returns its agent's address and thumbprint.</summary>
    Task<CloudVm> CreateAsync(Guid workerId, string pool, CancellationToken cancellationToken);

    /// <summary>Makes the worker's agent trust exactly one thumbprint; returns the agent's own thumbprint.</summary>
    Task<string> TrustAsync(Guid workerId, string thumbprint, CancellationToken cancellationToken);

    /// <summary>Deletes the VM; deleting one that is already gone succeeds.</summary>
    Task DeleteAsync(Guid workerId, CancellationToken cancellationToken);

    /// <summary>Every VM this service created that still exists.</summary>
    Task<IReadOnlyList<CloudVm>> ListAsync(CancellationToken cancellationToken);
}

/// <summary>A VM as the cloud sees it.</summary>
public sealed record CloudVm(Guid WorkerId, string Pool, string Address, string AgentThumbprint, DateTimeOffset CreatedAt, bool Provisioning);
