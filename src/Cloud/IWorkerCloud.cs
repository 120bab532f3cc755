namespace DynamicWorkers.Cloud;

/// <summary>
/// The port through which the service creates, commands and deletes worker VMs. Adapters: the local
/// simulator (tests, Standalone) and Azure (production). Every call is idempotent per worker id, because
/// the commands that drive it may be redelivered.
/// </summary>
public interface IWorkerCloud
{
    /// <summary>Creates (or finds, if it already exists) the VM of a worker; returns it once it runs.</summary>
    Task<CloudVm> CreateAsync(Guid workerId, VmSpec spec, CancellationToken cancellationToken);

    /// <summary>
    /// Makes the worker's agent trust exactly one instance's thumbprint; returns the agent's own thumbprint.
    /// </summary>
    Task<string> TrustAsync(Guid workerId, string instanceId, string thumbprint, CancellationToken cancellationToken);

    /// <summary>Deletes the VM; deleting one that is already gone succeeds.</summary>
    Task DeleteAsync(Guid workerId, CancellationToken cancellationToken);

    /// <summary>
    /// Every VM this service created that still exists (the reaper's sweep compares it with the live workers).
    /// </summary>
    Task<IReadOnlyList<CloudVm>> ListAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Whether the worker's VM runs now (read before an idle worker is handed out again). A VM that is gone counts as
    /// <see cref="VmHealth.NotRunning"/>; a cloud that cannot tell (a transient error, a timeout) throws.
    /// </summary>
    Task<VmHealth> CheckAsync(Guid workerId, CancellationToken cancellationToken);
}

/// <summary>What the cloud says of a VM's health.</summary>
public enum VmHealth
{
    Running,

    /// <summary>Stopped, deallocated, failed or gone: a worker on it can serve no lease.</summary>
    NotRunning,
}

/// <summary>What to create: the pool's image and VM size.</summary>
public sealed record VmSpec(string Pool, string Image, string Size);

/// <summary>A VM as the cloud sees it.</summary>
public sealed record CloudVm(
    Guid WorkerId,
    string Pool,
    string Address,
    string AgentThumbprint,
    DateTimeOffset CreatedAt,
    bool Provisioning,
    string? TrustedInstanceId);

/// <summary>
/// The cloud refused for a reason that retrying the same call will not fix (quota, bad image, the VM
/// failed to start): the caller reports the failure so the lifecycle replaces the worker.
/// Transient errors are thrown as anything else and retried.
/// </summary>
public sealed class WorkerCloudException(string reason, Exception? inner = null) : Exception(reason, inner)
{
    public string Reason { get; } = reason;
}
