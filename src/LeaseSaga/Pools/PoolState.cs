using System.Security.Cryptography;
using System.Text;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>One pool: its size (persisted; <c>SetPoolSize</c> changes it), its ledger and its failure backoff.</summary>
public sealed class PoolState : SagaStateMachineInstance, ISagaVersion
{
    public Guid CorrelationId { get; set; }
    public int Version { get; set; }
    public string CurrentState { get; set; } = "";

    public string Name { get; set; } = "";
    public int HotTarget { get; set; }
    public int MaxWorkers { get; set; }
    public PoolBook Book { get; set; } = new();

    /// <summary>Provisioning or trust failures in a row; from the third on, the pool stops provisioning for a while.</summary>
    public int ConsecutiveFailures { get; set; }
    public DateTimeOffset? BackoffUntil { get; set; }
    public Guid? BackoffToken { get; set; }
}

/// <summary>A pool saga's id is derived from the pool's name, so every message can find it without a lookup.</summary>
public static class PoolIds
{
    public static Guid For(string pool)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes("dynamic-workers/pool/" + pool.ToLowerInvariant()));
        return new Guid(hash.AsSpan(0, 16));
    }
}
