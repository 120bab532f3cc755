using DynamicWorkers.Contracts;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Queries;

/// <summary>
/// The read side every ops surface shares (the bus queries, <c>/api/*</c>, the gauges): straight from the
/// saga tables, never through the sagas, so looking never slows leasing down.
/// </summary>
public sealed class OpsQueries(DynamicWorkersDbContext db, IOptionsMonitor<PoolsOptions> pools)
{
    /// <summary>
    /// The most leases one answer carries: the HTTP API's largest page and every <see cref="GetLeases"/> answer.
    /// </summary>
    public const int MaxLeases = 500;

    public async Task<IReadOnlyList<PoolSummary>> PoolsAsync(string? pool, CancellationToken cancellationToken)
    {
        // Read once: a reload in between must not drop a pool from under the loop below. A removed pool is not listed.
        var configured = pools.CurrentValue.Pools;
        var names = configured.Keys
            .Where(p => pool is null || string.Equals(p, pool, StringComparison.OrdinalIgnoreCase))
            .Select(p => p.ToLowerInvariant())
            .ToList();
        var saved = await db.Set<PoolState>().AsNoTracking().Where(p => names.Contains(p.Name))
            .ToListAsync(cancellationToken);
        var counts = await db.Set<WorkerState>().AsNoTracking()
            .Where(w => names.Contains(w.Pool))
            .GroupBy(w => new { w.Pool, w.CurrentState, w.Image })
            .Select(g => new { g.Key.Pool, g.Key.CurrentState, g.Key.Image, Count = g.Count() })
            .ToListAsync(cancellationToken);
        var waiting = await db.Set<LeaseState>().AsNoTracking()
            .Where(l => names.Contains(l.Pool) && LeaseStates.Waiting.Contains(l.CurrentState))
            .GroupBy(l => l.Pool)
            .Select(g => new { Pool = g.Key, Count = g.Count() })
            .ToListAsync(cancellationToken);

        return names.Order().Select(name =>
        {
            var definition = configured[name];
            var state = saved.FirstOrDefault(p => p.Name == name);
            var image = string.IsNullOrEmpty(state?.Image) ? definition.Image : state.Image;
            var workers = counts.Where(c => c.Pool == name).ToList();
            return new PoolSummary(
                name,
                workers.GroupBy(c => c.CurrentState).ToDictionary(g => g.Key, g => g.Sum(c => c.Count)),
                state?.HotTarget ?? definition.HotTarget,
                state?.MaxWorkers ?? definition.MaxWorkers,
                waiting.FirstOrDefault(w => w.Pool == name)?.Count ?? 0,
                image,
                definition.Tools,
                workers.Where(c => WorkerStates.Live.Contains(c.CurrentState) && c.Image != image).Sum(c => c.Count));
        }).ToList();
    }

    public async Task<IReadOnlyList<WorkerSummary>> WorkersAsync(string? pool, string? instanceId,
        CancellationToken cancellationToken)
    {
        var query = db.Set<WorkerState>().AsNoTracking();
        if (pool is not null)
        {
            query = query.Where(w => w.Pool == pool.ToLowerInvariant());
        }

        if (instanceId is not null)
        {
            query = query.Where(w => w.TrustedInstanceId == instanceId);
        }

        var workers = await query.ToListAsync(cancellationToken);
        return workers
            .OrderBy(w => w.CreatedAt)
            .Select(w => new WorkerSummary(
                w.CorrelationId, w.Pool, w.CurrentState, w.TrustedInstanceId, w.CurrentLeaseId,
                w.ProvisionedAt ?? w.CreatedAt, w.LastLeaseEndedAt, w.LeaseCount))
            .ToList();
    }

    /// <summary>
    /// Leases still open (waiting or granted), then the most recent ended ones, newest first, up to
    /// <paramref name="limit"/>.
    /// </summary>
    public async Task<IReadOnlyList<LeaseSummary>> LeasesAsync(string? pool, string? instanceId, int limit,
        CancellationToken cancellationToken)
    {
        var query = db.Set<LeaseState>().AsNoTracking();
        if (pool is not null)
        {
            query = query.Where(l => l.Pool == pool.ToLowerInvariant());
        }

        if (instanceId is not null)
        {
            query = query.Where(l => l.InstanceId == instanceId);
        }

        var open = await query.Where(l => l.EndedAt == null).Take(limit).ToListAsync(cancellationToken);
        var ended = open.Count >= limit
            ? []
            : await query.Where(l => l.EndedAt != null).OrderByDescending(l => l.EndedAt).Take(limit - open.Count)
                .ToListAsync(cancellationToken);
        return open.OrderByDescending(l => l.ReceivedAt).Concat(ended)
            .Select(l => new LeaseSummary(
                l.CorrelationId, l.InstanceId, l.Pool, l.CurrentState, l.TaskId, l.ReceivedAt, l.Waited, l.WorkerId,
                l.Reused, l.GrantedAt, l.ExpiresAt, l.EndedAt, l.RejectReason ?? l.RevokeReason))
            .ToList();
    }
}
