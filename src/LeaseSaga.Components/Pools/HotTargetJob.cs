using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Configuration;
using MassTransit;
using Microsoft.Extensions.Options;
using Quartz;

namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// Every minute, once across the scheduler's cluster, asks the pool keeper to re-evaluate each adaptive pool's hot
/// target. A Quartz job of its own rather than a saga timer: it belongs to no lease or worker, and the clustered store
/// fires it on one node even with many LeaseSaga copies.
/// </summary>
[DisallowConcurrentExecution]
public sealed class HotTargetJob(IBus bus, IOptionsMonitor<PoolsOptions> pools) : IJob
{
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);
    static readonly JobKey Key = new("adaptive-hot-target", "dynamic-workers");

    /// <summary>
    /// Registers the job and its trigger with the host's Quartz scheduler (a host without one ignores it).
    /// </summary>
    public static void Schedule(IQuartzBuilder quartz)
    {
        quartz.AddJob<HotTargetJob>(j => j.WithIdentity(Key).StoreDurably());
        quartz.AddTrigger(t => t
            .ForJob(Key)
            .WithIdentity("adaptive-hot-target", "dynamic-workers")
            .StartAt(DateTimeOffset.UtcNow + Interval)
            // A minute missed while every node was down is not made up: the next evaluation sees the same demand.
            .WithSimpleSchedule(s => s
                .WithInterval(Interval)
                .RepeatForever()
                .WithMisfireInstruction(SimpleTriggerMisfireInstruction.NextWithRemainingCount)));
    }

    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
    {
        foreach (var (pool, definition) in pools.CurrentValue.Pools)
        {
            if (definition.Adaptive.Enabled)
            {
                await bus.Publish(new EvaluateHotTarget(pool.ToLowerInvariant()), cancellationToken);
            }
        }
    }
}
