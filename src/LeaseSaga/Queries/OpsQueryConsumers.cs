using DynamicWorkers.Contracts;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Queries;

/// <summary>Answers <see cref="GetPoolStatus"/> from the database: configured pools, persisted sizes, live counts.</summary>
public sealed class GetPoolStatusConsumer(DynamicWorkersDbContext db, IOptionsMonitor<PoolsOptions> pools) : IConsumer<GetPoolStatus>
{
    public async Task Consume(ConsumeContext<GetPoolStatus> context)
    {
        var names = pools.CurrentValue.Pools.Keys
            .Where(p => context.Message.Pool is null || string.Equals(p, context.Message.Pool, StringComparison.OrdinalIgnoreCase))
            .Select(p => p.ToLowerInvariant())
            .ToList();
        var saved = await db.Set<PoolState>().AsNoTracking().Where(p => names.Contains(p.Name)).ToListAsync(context.CancellationToken);
        var counts = await db.Set<WorkerState>().AsNoTracking()
            .Where(w => names.Contains(w.Pool))
            .GroupBy(w => new { w.Pool, w.CurrentState })
            .Select(g => new { g.Key.Pool, g.Key.CurrentState, Count = g.Count() })
            .ToListAsync(context.CancellationToken);
        var waiting = await db.Set<LeaseState>().AsNoTracking()
            .Where(l => names.Contains(l.Pool) && (l.CurrentState == "Allocating" || l.CurrentState == "WaitingForWorker"))
            .GroupBy(l => l.Pool)
            .Select(g => new { Pool = g.Key, Count = g.Count() })
            .ToListAsync(context.CancellationToken);

        var summaries = names.Order().Select(name =>
        {
            var definition = pools.CurrentValue.Pools[name];
            var state = saved.FirstOrDefault(p => p.Name == name);
            return new PoolSummary(
                name,
                counts.Where(c => c.Pool == name).ToDictionary(c => c.CurrentState, c => c.Count),
                state?.HotTarget ?? definition.HotTarget,
                state?.MaxWorkers ?? definition.MaxWorkers,
                waiting.FirstOrDefault(w => w.Pool == name)?.Count ?? 0,
                definition.Image,
                definition.Tools);
        }).ToList();
        await context.RespondAsync(new PoolStatus(summaries));
    }
}

/// <summary>Answers <see cref="GetWorkers"/> from the database.</summary>
public sealed class GetWorkersConsumer(DynamicWorkersDbContext db) : IConsumer<GetWorkers>
{
    public async Task Consume(ConsumeContext<GetWorkers> context)
    {
        var query = db.Set<WorkerState>().AsNoTracking();
        if (context.Message.Pool is { } pool)
        {
            query = query.Where(w => w.Pool == pool.ToLowerInvariant());
        }

        if (context.Message.InstanceId is { } instance)
        {
            query = query.Where(w => w.TrustedInstanceId == instance);
        }

        var workers = await query.ToListAsync(context.CancellationToken);
        await context.RespondAsync(new WorkerList(workers
            .OrderBy(w => w.CreatedAt)
            .Select(w => new WorkerSummary(
                w.CorrelationId, w.Pool, w.CurrentState, w.TrustedInstanceId, w.CurrentLeaseId,
                w.ProvisionedAt ?? w.CreatedAt, w.LastLeaseEndedAt, w.LeaseCount))
            .ToList()));
    }
}
