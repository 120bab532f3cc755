namespace DynamicWorkers.Client;

public sealed class DynamicWorkersClientOptions
{
    /// <summary>
    /// How long <see cref="DynamicWorkersClient.RequestLeaseAsync"/> waits in total unless the call says otherwise.
    /// The service always answers within the pool's allocation timeout (30 min by default, then <c>NoCapacity</c>).
    /// </summary>
    public TimeSpan LeaseDeadline { get; set; } = TimeSpan.FromMinutes(31);

    /// <summary>How long the ops queries (pool status, workers) wait in total.</summary>
    public TimeSpan QueryDeadline { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long one attempt waits before the request is published again (same <c>LeaseId</c>, so a repeat is
    /// harmless). A repeat covers a request published before the service's queue existed or a response queue lost
    /// with its connection; while the lease is still being allocated, the answer goes to the latest attempt.
    /// </summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);
}
