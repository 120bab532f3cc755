using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.LeaseSaga.Configuration;
using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// Once the host has started (the bus is connected), opens every configured pool (a persisted size wins
/// over the configured one) and tops it up.
/// </summary>
public sealed class PoolReconciler(IBus bus, IOptionsMonitor<PoolsOptions> pools, IHostApplicationLifetime lifetime) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await lifetime.WhenStartedAsync(stoppingToken);
        foreach (var pool in pools.CurrentValue.Pools.Keys)
        {
            await bus.Publish(new ReconcilePool(pool.ToLowerInvariant()), stoppingToken);
        }
    }
}
