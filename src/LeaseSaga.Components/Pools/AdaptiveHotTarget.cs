using DynamicWorkers.Contracts;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Workers;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// Sets an adaptive pool's hot target from its recent demand (<see cref="HotTargetModel"/>): the leases re-use could
/// not serve over <c>Adaptive:DemandWindow</c>, and the mean provisioning time of its latest workers.
/// </summary>
public sealed class AdaptiveHotTarget(
    DynamicWorkersDbContext db,
    IOptionsMonitor<PoolsOptions> pools,
    TimeProvider clock,
    ILogger<AdaptiveHotTarget> logger)
{
    /// <summary>
    /// The provisioning time is the mean over this many of the pool's most recently provisioned workers.
    /// </summary>
    const int ProvisioningSamples = 20;

    /// <summary>Every lease state, named so that the (Pool, CurrentState, ReceivedAt) index serves the count.</summary>
    static readonly string[] AnyLeaseState =
    [
        LeaseStates.Allocating, LeaseStates.WaitingForWorker, LeaseStates.Granted,
        LeaseStates.Released, LeaseStates.Revoked, LeaseStates.Rejected,
    ];

    /// <summary>Whether the pool's hot target follows demand.</summary>
    public bool IsAdaptive(string pool)
        => pools.CurrentValue.Pools.TryGetValue(pool, out var definition) && definition.Adaptive.Enabled;

    /// <summary>
    /// Changes the pool's hot target (the caller holds its lock and saves it) and returns the inputs it used.
    /// </summary>
    public async Task<HotTargetEvaluation?> EvaluateAsync(PoolState pool, CancellationToken cancellationToken)
    {
        if (!pools.CurrentValue.Pools.TryGetValue(pool.Name, out var definition) || !definition.Adaptive.Enabled)
        {
            return null;
        }

        var adaptive = definition.Adaptive;
        var since = clock.GetUtcNow() - adaptive.DemandWindow;
        // A lease turned away for its instance's share, or for bad input, is no demand the hot pool should meet.
        var arrivals = await db.Set<LeaseState>().CountAsync(
            l => l.Pool == pool.Name && AnyLeaseState.Contains(l.CurrentState) && l.ReceivedAt >= since && !l.Reused
                 && (l.RejectReason == null || l.RejectReason == LeaseRejectionReasons.NoCapacity),
            cancellationToken);
        var provisioned = await db.Set<WorkerState>().AsNoTracking()
            .Where(w => w.Pool == pool.Name && w.ProvisionedAt != null)
            .OrderByDescending(w => w.ProvisionedAt)
            .Take(ProvisioningSamples)
            .Select(w => new { w.CreatedAt, ProvisionedAt = w.ProvisionedAt!.Value })
            .ToListAsync(cancellationToken);
        var provisioningTime = provisioned.Count == 0
            ? adaptive.InitialProvisioningTime
            : TimeSpan.FromTicks((long)provisioned.Average(w => (w.ProvisionedAt - w.CreatedAt).Ticks));

        var rate = arrivals / adaptive.DemandWindow.TotalMinutes;
        var maxHot = Math.Min(adaptive.MaxHot, pool.MaxWorkers);
        var required = HotTargetModel.Required(rate, provisioningTime, adaptive.TargetWaitProbability,
            PoolOptions.HotTargetLimit);
        var next = HotTargetModel.Next(pool.HotTarget, required, Math.Min(adaptive.MinHot, maxHot), maxHot);
        var evaluation = new HotTargetEvaluation(pool.HotTarget, next, arrivals, adaptive.DemandWindow,
            provisioningTime, provisioned.Count, required);
        if (next != pool.HotTarget)
        {
            logger.LogInformation(
                "Pool {Pool}: adaptive hot target {OldHotTarget} → {HotTarget} "
                + "({Arrivals} leases re-use could not serve in {DemandWindow}, {Rate:0.##}/min; "
                + "provisioning {ProvisioningTime} over {Samples} workers; "
                + "{Required} keeps P(wait) ≤ {TargetWaitProbability}; bounds {MinHot}–{MaxHot})",
                pool.Name, pool.HotTarget, next, arrivals, adaptive.DemandWindow, rate, provisioningTime,
                provisioned.Count, required, adaptive.TargetWaitProbability, adaptive.MinHot, maxHot);
            pool.HotTarget = next;
        }

        return evaluation;
    }
}

/// <summary>One evaluation of an adaptive pool's hot target and what it was computed from.</summary>
public sealed record HotTargetEvaluation(
    int Previous,
    int HotTarget,
    int Arrivals,
    TimeSpan DemandWindow,
    TimeSpan ProvisioningTime,
    int ProvisioningSamples,
    int Required);
