using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Persistence;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// Commands about a pool as a whole: open it at start-up or when configuration adds it, drain it when configuration
/// removes it, resize it, change its image, end its backoff, follow its demand. Each locks the pool's row, changes it
/// and tops the pool up (or retires surplus and outdated workers) in one transaction.
/// </summary>
public sealed class PoolKeeper(
    Allocator allocator,
    AdaptiveHotTarget adaptive,
    DynamicWorkersDbContext db,
    TimeProvider clock,
    ILogger<PoolKeeper> logger) :
    IConsumer<ReconcilePool>,
    IConsumer<SetPoolSize>,
    IConsumer<SetPoolImage>,
    IConsumer<PoolBackoffEnded>,
    IConsumer<EvaluateHotTarget>
{
    public async Task Consume(ConsumeContext<ReconcilePool> context)
    {
        var name = context.Message.Pool.ToLowerInvariant();
        // Added and removed again before it was ever opened: there is nothing to open or drain.
        if (allocator.IsDraining(name)
            && !await db.Set<PoolState>().AnyAsync(p => p.Name == name, context.CancellationToken))
        {
            logger.LogInformation("Pool {Pool} is neither configured nor opened: nothing to reconcile", name);
            return;
        }

        await RebalanceAsync(context, name, _ => { });
    }

    public Task Consume(ConsumeContext<SetPoolSize> context)
    {
        var (hotTarget, maxWorkers) = (context.Message.HotTarget, context.Message.MaxWorkers);
        if (hotTarget < 0 || maxWorkers < 1 || hotTarget > maxWorkers || hotTarget > PoolOptions.HotTargetLimit
            || maxWorkers > PoolOptions.MaxWorkersLimit)
        {
            throw new ArgumentException($"SetPoolSize for '{context.Message.Pool}': need 0 <= HotTarget <= MaxWorkers, "
                + $"1 <= MaxWorkers, HotTarget <= {PoolOptions.HotTargetLimit} "
                + $"and MaxWorkers <= {PoolOptions.MaxWorkersLimit} (the configuration's bounds), "
                + $"got HotTarget {hotTarget}, MaxWorkers {maxWorkers}");
        }

        return RebalanceAsync(context, context.Message.Pool, pool =>
        {
            logger.LogInformation("Pool {Pool}: size {HotTarget}/{MaxWorkers} (was {OldHotTarget}/{OldMaxWorkers})",
                pool.Name, hotTarget, maxWorkers, pool.HotTarget, pool.MaxWorkers);
            pool.HotTarget = hotTarget;
            pool.MaxWorkers = maxWorkers;
        });
    }

    public async Task Consume(ConsumeContext<SetPoolImage> context)
    {
        var image = context.Message.Image;
        if (string.IsNullOrWhiteSpace(image) || image.Length > PoolOptions.MaxImageLength)
        {
            throw new ArgumentException($"SetPoolImage for '{context.Message.Pool}': "
                + $"Image must be 1 to {PoolOptions.MaxImageLength} characters, not blank");
        }

        var pool = await allocator.LockPoolAsync(context.Message.Pool.ToLowerInvariant(), context.CancellationToken);
        await allocator.ChangeImageAsync(pool, image, context.CancellationToken);
        await allocator.RebalanceAsync(context, pool);
        await allocator.CommitAsync(context.CancellationToken);
    }

    public Task Consume(ConsumeContext<PoolBackoffEnded> context)
        => RebalanceAsync(context, context.Message.Pool, pool =>
        {
            if (pool.BackoffUntil <= clock.GetUtcNow())
            {
                pool.BackoffUntil = null;
            }
        });

    public Task Consume(ConsumeContext<EvaluateHotTarget> context)
        => RebalanceAsync(context, context.Message.Pool,
            pool => adaptive.EvaluateAsync(pool, context.CancellationToken));

    Task RebalanceAsync(ConsumeContext context, string name, Action<PoolState> change)
        => RebalanceAsync(context, name, pool =>
        {
            change(pool);
            return Task.CompletedTask;
        });

    async Task RebalanceAsync(ConsumeContext context, string name, Func<PoolState, Task> change)
    {
        var pool = await allocator.LockPoolAsync(name.ToLowerInvariant(), context.CancellationToken);
        await change(pool);
        await allocator.RebalanceAsync(context, pool);
        await allocator.CommitAsync(context.CancellationToken);
    }
}
