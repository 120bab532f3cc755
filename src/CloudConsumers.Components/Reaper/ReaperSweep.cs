using System.ComponentModel.DataAnnotations;
using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Reaper;

/// <summary>Section <c>Reaper</c>.</summary>
public sealed class ReaperOptions
{
    public const string Section = "Reaper";

    /// <summary>How often the sweep runs.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How late a timer may be before the sweep delivers it itself.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan OverdueGrace { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// A VM with no live worker is deleted only once it is at least this old (its worker may still be on its way).
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00")]
    public TimeSpan OrphanGrace { get; set; } = TimeSpan.FromMinutes(10);
}

/// <summary>
/// The safety net, never the primary timer: every interval it asks the LeaseSaga service to re-deliver
/// overdue timeouts, and deletes cloud VMs of this service that no live worker owns (orphans), counting
/// them as <c>dw_workers_reaped_total{reason="orphan"}</c>. A VM still provisioning is never touched, and if
/// the list of live workers cannot be had, nothing is deleted. Each delete stands alone: one that fails is
/// logged and tried again next sweep, and does not keep the others from going.
/// </summary>
public sealed class ReaperSweep(
    IServiceScopeFactory scopes,
    IBus bus,
    IWorkerCloud cloud,
    IOptionsMonitor<ReaperOptions> options,
    TimeProvider clock,
    ILogger<ReaperSweep> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.CurrentValue.SweepInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await SweepAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogWarning(e, "Sweep failed; it runs again in {Interval}", options.CurrentValue.SweepInterval);
            }
        }
    }

    public async Task<int> SweepAsync(CancellationToken cancellationToken)
    {
        await bus.Publish(new SweepOverdueTimers(options.CurrentValue.OverdueGrace), cancellationToken);

        var vms = await cloud.ListAsync(cancellationToken);
        var old = clock.GetUtcNow() - options.CurrentValue.OrphanGrace;
        var candidates = vms.Where(v => !v.Provisioning && v.CreatedAt < old).ToList();
        if (candidates.Count == 0)
        {
            return 0;
        }

        await using var scope = scopes.CreateAsyncScope();
        var client = scope.ServiceProvider.GetRequiredService<IRequestClient<GetWorkers>>();
        var live = (await client.GetResponse<WorkerList>(new GetWorkers(null, null), cancellationToken)).Message.Workers
            .Select(w => w.WorkerId)
            .ToHashSet();
        var deleted = 0;
        foreach (var vm in candidates.Where(v => !live.Contains(v.WorkerId)))
        {
            logger.LogWarning(
                "Deleting orphan VM of worker {WorkerId} in {Pool}, created {CreatedAt:O}: no live worker owns it",
                vm.WorkerId, vm.Pool, vm.CreatedAt);
            try
            {
                await cloud.DeleteAsync(vm.WorkerId, cancellationToken);
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                logger.LogWarning(e, "Deleting orphan VM of worker {WorkerId} failed; the next sweep tries again",
                    vm.WorkerId);
                continue;
            }

            // Counted once the delete succeeded. The cloud cannot say whether it removed the VM or found it gone
            // already (another delete won the race), so such a VM is counted too.
            DwTelemetry.WorkersReaped.Add(1, new KeyValuePair<string, object?>("reason", "orphan"));
            deleted++;
        }

        return deleted;
    }
}
