using System.Threading.Channels;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Persistence;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// Once the host has started (the bus is connected), and again whenever the pool configuration is reloaded, asks the
/// pool keeper to reconcile every pool configured or known by its row: a new pool is opened (a persisted size wins over
/// the configured one) and topped up, a removed one drains.
/// </summary>
public sealed class PoolReconciler(
    IBus bus,
    IOptionsMonitor<PoolsOptions> pools,
    IServiceScopeFactory scopes,
    IHostApplicationLifetime lifetime,
    ILogger<PoolReconciler> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // One pending signal is enough: a reload reconciles every pool, however many changes came before it.
        var changed = Channel.CreateBounded<bool>(
            new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
        using var subscription = pools.OnChange(_ => changed.Writer.TryWrite(true));
        await lifetime.WhenStartedAsync(stoppingToken);
        await ReconcileAsync(stoppingToken);
        while (await changed.Reader.WaitToReadAsync(stoppingToken))
        {
            changed.Reader.TryRead(out _);
            try
            {
                await ReconcileAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The broker or database is away: the next reload, or the next start, reconciles again.
                logger.LogWarning(e, "Pools not reconciled after a configuration change");
            }
        }
    }

    async Task ReconcileAsync(CancellationToken cancellationToken)
    {
        var configured = pools.CurrentValue.Pools.Keys.Select(p => p.ToLowerInvariant()).ToList();
        await using var scope = scopes.CreateAsyncScope();
        var opened = await scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>()
            .Set<PoolState>().AsNoTracking()
            .Select(p => p.Name).ToListAsync(cancellationToken);
        var removed = opened.Except(configured).ToList();
        if (removed.Count > 0)
        {
            logger.LogInformation("Pools configured: {Configured}; not configured, drained: {Removed}",
                string.Join(", ", configured), string.Join(", ", removed));
        }

        foreach (var pool in configured.Union(opened))
        {
            await bus.Publish(new ReconcilePool(pool), cancellationToken);
        }
    }
}
