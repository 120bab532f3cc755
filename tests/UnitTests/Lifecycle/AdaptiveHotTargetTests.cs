using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

public sealed class AdaptiveHotTargetTests
{
    static readonly TimeSpan TenMinutes = TimeSpan.FromMinutes(10);

    [Theory]
    // Poisson(10): P(N ≥ 15) = 0.083, P(N ≥ 16) = 0.049.
    [InlineData(1.0, 10, 0.05, 16)]
    [InlineData(1.0, 10, 0.10, 15)]
    [InlineData(0.0, 10, 0.05, 0)]
    // Poisson(0.5): P(N ≥ 1) = 0.39, P(N ≥ 2) = 0.090, P(N ≥ 3) = 0.014.
    [InlineData(0.05, 10, 0.05, 3)]
    public void The_target_is_the_smallest_that_keeps_the_chance_of_waiting_at_or_below_the_goal(double perMinute,
        int minutes, double goal, int expected)
    {
        var target =
            HotTargetModel.Required(perMinute, TimeSpan.FromMinutes(minutes), goal, PoolOptions.HotTargetLimit);

        Assert.Equal(expected, target);
        if (target > 0)
        {
            Assert.True(HotTargetModel.WaitProbability(perMinute, TimeSpan.FromMinutes(minutes), target) <= goal);
            Assert.True(HotTargetModel.WaitProbability(perMinute, TimeSpan.FromMinutes(minutes), target - 1) > goal);
        }
    }

    [Fact]
    public void A_large_demand_stays_finite_and_stops_at_the_limit()
    {
        // Poisson(500): about 500 + 1.645 × √500 = 537 keeps P(wait) at 5 %.
        Assert.InRange(HotTargetModel.Required(25, TimeSpan.FromMinutes(20), 0.05, PoolOptions.HotTargetLimit), 530,
            545);
        Assert.Equal(PoolOptions.HotTargetLimit,
            HotTargetModel.Required(1000, TimeSpan.FromMinutes(20), 0.05, PoolOptions.HotTargetLimit));
    }

    [Theory]
    [InlineData(4, 16, 0, 50, 16)]
    [InlineData(16, 0, 0, 50, 15)]
    [InlineData(40, 0, 0, 50, 36)]
    [InlineData(40, 0, 38, 50, 38)]
    [InlineData(4, 60, 0, 50, 50)]
    [InlineData(0, 0, 2, 50, 2)]
    public void The_target_rises_at_once_and_falls_by_a_tenth_at_most_within_bounds(int current, int required, int min,
        int max, int expected)
        => Assert.Equal(expected, HotTargetModel.Next(current, required, min, max));

    [Fact]
    public async Task Demand_re_use_cannot_serve_raises_the_target_and_the_keeper_starts_the_workers()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 40, settings: Adaptive(minHot: 1, maxHot: 30));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 1);
        await SeedDemandAsync(bed, hotArrivals: 15, reused: 40, turnedAway: 10);

        await bed.Bus.Publish(new EvaluateHotTarget(Pool));

        // 15 in 15 minutes over a 10-minute provisioning time: Poisson(10), 16 keeps P(wait) ≤ 5 %. Re-used and
        // turned-away leases are no demand.
        await Until(async () => (await bed.PoolAsync())!.HotTarget == 16, "hot target 16");
        await bed.UntilWorkersAsync(WorkerStates.Ready, 16);
    }

    [Fact]
    public async Task Without_demand_the_target_falls_step_by_step_to_its_floor_and_surplus_hot_workers_go()
    {
        await using var bed =
            await StartAsync(hotTarget: 12, maxWorkers: 40, settings: Adaptive(minHot: 10, maxHot: 30));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 12);

        await bed.Bus.Publish(new EvaluateHotTarget(Pool));
        await Until(async () => (await bed.PoolAsync())!.HotTarget == 11, "hot target 11 after one evaluation");
        await bed.UntilWorkersAsync(WorkerStates.Ready, 11);

        await bed.Bus.Publish(new EvaluateHotTarget(Pool));
        await Until(async () => (await bed.PoolAsync())!.HotTarget == 10, "hot target 10, the floor");
        await bed.Bus.Publish(new EvaluateHotTarget(Pool));
        await bed.SettledAsync();
        Assert.Equal(10, (await bed.PoolAsync())!.HotTarget);
        await bed.UntilWorkersAsync(WorkerStates.Ready, 10);
    }

    [Fact]
    public async Task A_pool_that_is_not_adaptive_keeps_its_target()
    {
        await using var bed = await StartAsync(hotTarget: 2, maxWorkers: 40);
        await bed.UntilWorkersAsync(WorkerStates.Ready, 2);
        await SeedDemandAsync(bed, hotArrivals: 15, reused: 0, turnedAway: 0);

        await bed.Bus.Publish(new EvaluateHotTarget(Pool));
        await bed.SettledAsync();

        Assert.Equal(2, (await bed.PoolAsync())!.HotTarget);
    }

    [Fact]
    public async Task The_job_asks_for_an_evaluation_of_each_adaptive_pool_only()
    {
        await using var bed = await StartAsync(settings: s =>
        {
            Adaptive(minHot: 0, maxHot: 5)(s);
            s["Pools:windows:Image"] = "windows-image";
        });
        var job = new HotTargetJob(bed.Bus, bed.Services.GetRequiredService<IOptionsMonitor<PoolsOptions>>());

        await job.Execute(null!, CancellationToken.None);

        await Until(() => bed.PublishedOf<EvaluateHotTarget>().Count == 1, "one evaluation");
        Assert.Equal(Pool, bed.PublishedOf<EvaluateHotTarget>().Single().Pool);
    }

    static Action<IDictionary<string, string?>> Adaptive(int minHot, int maxHot) => settings =>
    {
        settings[$"Pools:{Pool}:Adaptive:Enabled"] = "true";
        settings[$"Pools:{Pool}:Adaptive:MinHot"] = minHot.ToString();
        settings[$"Pools:{Pool}:Adaptive:MaxHot"] = maxHot.ToString();
        settings[$"Pools:{Pool}:Adaptive:TargetWaitProbability"] = "0.05";
        settings[$"Pools:{Pool}:Adaptive:DemandWindow"] = "00:15:00";
    };

    /// <summary>Leases of the last quarter hour as rows, and every worker so far taking ten minutes to
    /// provision.</summary>
    static async Task SeedDemandAsync(LifecycleBed bed, int hotArrivals, int reused, int turnedAway)
    {
        await using var scope = bed.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>();
        var now = bed.Clock.GetUtcNow();
        LeaseState Lease(int i, bool isReused, string? rejected) => new()
        {
            CorrelationId = NewId.NextGuid(), InstanceId = $"instance-{i}", ServerThumbprint = ThumbprintA, Pool = Pool,
            CurrentState = rejected is null ? LeaseStates.Released : LeaseStates.Rejected, Reused = isReused,
            RejectReason = rejected,
            RequestedAt = now - TimeSpan.FromMinutes(i % 14), ReceivedAt = now - TimeSpan.FromMinutes(i % 14),
            EndedAt = now,
        };
        db.AddRange(Enumerable.Range(0, hotArrivals).Select(i => Lease(i, isReused: false, rejected: null)));
        db.AddRange(Enumerable.Range(0, reused).Select(i => Lease(i, isReused: true, rejected: null)));
        db.AddRange(Enumerable.Range(0, turnedAway)
            .Select(i => Lease(i, isReused: false, rejected: LeaseRejectionReasons.InstanceLimit)));
        // An hour ago, out of the window: no demand now.
        var old = Lease(0, isReused: false, rejected: null);
        old.ReceivedAt = now - TimeSpan.FromHours(1);
        db.Add(old);
        await db.SaveChangesAsync();
        foreach (var worker in await db.Set<WorkerState>().AsTracking().ToListAsync())
        {
            worker.CreatedAt = (worker.ProvisionedAt ?? now) - TenMinutes;
            worker.Version++;
        }

        await db.SaveChangesAsync();
    }
}
