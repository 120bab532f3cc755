using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>
/// Deletes leases that ended (released, revoked or rejected) longer than <c>Retention:EndedLeases</c> ago, in batches,
/// every <c>Retention:PurgeInterval</c>. Every LeaseSaga copy runs it: two deleting the same batch is harmless.
/// </summary>
public sealed class EndedLeasePurge(
    IServiceScopeFactory scopes,
    IOptionsMonitor<RetentionOptions> options,
    TimeProvider clock,
    ILogger<EndedLeasePurge> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await PurgeAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The database is down: /readyz says so, and the next round deletes what this one could not.
                logger.LogWarning(e, "Ended leases not purged this round");
            }

            await Task.Delay(options.CurrentValue.PurgeInterval, clock, stoppingToken);
        }
    }

    /// <summary>
    /// One round: batch after batch until a batch comes back short. Returns how many leases were deleted.
    /// </summary>
    public async Task<int> PurgeAsync(CancellationToken cancellationToken)
    {
        var retention = options.CurrentValue;
        var cutoff = clock.GetUtcNow() - retention.EndedLeases;
        var total = 0;
        int deleted;
        do
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>();
            var batch = db.Set<LeaseState>().Where(l => l.EndedAt < cutoff).OrderBy(l => l.EndedAt)
                .Take(retention.PurgeBatch).Select(l => l.CorrelationId);
            deleted = await db.Set<LeaseState>().Where(l => batch.Contains(l.CorrelationId))
                .ExecuteDeleteAsync(cancellationToken);
            total += deleted;
        }
        while (deleted >= retention.PurgeBatch && !cancellationToken.IsCancellationRequested);

        if (total > 0)
        {
            logger.LogInformation(
                "Deleted {Count} lease(s) that ended before {Cutoff:O} (Retention:EndedLeases {Retention})",
                total, cutoff, retention.EndedLeases);
        }

        return total;
    }
}
