namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// One pool's size (persisted; <c>SetPoolSize</c> changes it) and failure backoff. Its row is also the lock that
/// decisions which start or retire workers take, so that <c>MaxWorkers</c> holds across every LeaseSaga copy; the
/// workers and the waiting line themselves are the worker and lease rows.
/// </summary>
public sealed class PoolState
{
    public string Name { get; set; } = "";
    public int HotTarget { get; set; }
    public int MaxWorkers { get; set; }

    /// <summary>Provisioning or trust failures in a row; from the third on, the pool stops provisioning for a while.</summary>
    public int ConsecutiveFailures { get; set; }
    public DateTimeOffset? BackoffUntil { get; set; }
}
