namespace DynamicWorkers.Client;

/// <summary>
/// No answer within the deadline. For a lease request nothing is lost: ask again with the same
/// <see cref="LeaseId"/> and the service answers with the one outcome of that lease.
/// </summary>
public sealed class DynamicWorkersTimeoutException(string message, Guid? leaseId = null) : TimeoutException(message)
{
    public Guid? LeaseId { get; } = leaseId;
}

/// <summary>The broker could not be reached (refused, unknown host, bad credentials or virtual host).</summary>
public sealed class DynamicWorkersUnreachableException(string message, Exception? inner = null)
    : Exception(message, inner);
