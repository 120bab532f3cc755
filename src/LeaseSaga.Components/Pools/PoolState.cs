namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// One pool's size and image (persisted; <c>SetPoolSize</c> and <c>SetPoolImage</c> change them) and failure backoff.
/// Its row is also the lock that decisions which start or retire workers take, so that <c>MaxWorkers</c> holds across
/// every LeaseSaga copy; the workers and the waiting line themselves are the worker and lease rows.
/// </summary>
public sealed class PoolState
{
    public string Name { get; set; } = "";
    public int HotTarget { get; set; }
    public int MaxWorkers { get; set; }

    /// <summary>
    /// The image new workers get (<c>SetPoolImage</c> changes it); live workers of another image are rolled out.
    /// </summary>
    public string Image { get; set; } = "";

    /// <summary>
    /// The configuration's image when last read: only a change of it rolls out, so it never undoes a
    /// <c>SetPoolImage</c>.
    /// </summary>
    public string ConfiguredImage { get; set; } = "";

    /// <summary>
    /// Provisioning or trust failures in a row; from the third on, the pool stops provisioning for a while.
    /// </summary>
    public int ConsecutiveFailures { get; set; }
    public DateTimeOffset? BackoffUntil { get; set; }
}
