using DynamicWorkers.Contracts;
using DynamicWorkers.LeaseSaga.Workers;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>
/// Before an idle worker is leased again its VM is checked through the cloud port, once it has idled longer than
/// <c>Lifecycle:HealthCheckAfterIdle</c> (5 minutes by default): a dead one is reaped (<c>unhealthy</c>) and the lease
/// takes the next path; a cloud that cannot tell leaves the worker leased.
/// </summary>
public sealed class HealthBeforeReuseTests
{
    const string Instance = "instance-1";
    static readonly TimeSpan LongerThanTheCheckWindow = TimeSpan.FromMinutes(10);

    [Fact]
    public async Task A_dead_idle_worker_is_reaped_unhealthy_and_the_lease_gets_another_idle_worker_of_its_instance()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 3);
        var (older, newer) = await TwoIdleWorkersAsync(bed);
        await bed.AdvanceAsync(LongerThanTheCheckWindow);
        // Re-use takes the worker idle the shortest time first: that is the dead one.
        bed.Cloud.Dead[newer] = true;

        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));

        Assert.Equal(older, granted.WorkerId);
        Assert.True(granted.Reused);
        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == newer && d.Reason == ReapReasons.Unhealthy),
            "the dead worker deleted as unhealthy");
        await Until(async () => (await bed.WorkersAsync()).All(w => w.CorrelationId != newer),
            "the dead worker's saga finished");
        Assert.Contains(newer, bed.Cloud.HealthChecks);
    }

    [Fact]
    public async Task A_dead_idle_worker_at_max_workers_makes_room_and_the_lease_gets_a_new_worker()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1);
        var first = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));
        await bed.ReleaseAsync(first.LeaseId, Instance);
        await bed.UntilWorkersAsync(WorkerStates.Idle, 1);
        await bed.AdvanceAsync(LongerThanTheCheckWindow);
        bed.Cloud.Dead[first.WorkerId] = true;

        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));

        Assert.NotEqual(first.WorkerId, granted.WorkerId);
        Assert.False(granted.Reused);
        Assert.Contains(bed.Cloud.Deprovisioned,
            d => d.WorkerId == first.WorkerId && d.Reason == ReapReasons.Unhealthy);
    }

    [Fact]
    public async Task A_dead_worker_reaped_before_another_is_reused_lets_the_pool_refill_its_hot_target()
    {
        // Two idle workers fill the pool (MaxWorkers 2), so its hot target waits for room.
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 2);
        var (older, newer) = await TwoIdleWorkersAsync(bed);
        await bed.SettledAsync();
        Assert.Equal(0, await bed.WorkersInAsync(WorkerStates.Ready));
        await bed.AdvanceAsync(LongerThanTheCheckWindow);
        bed.Cloud.Dead[newer] = true;

        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));

        Assert.Equal(older, granted.WorkerId);
        await bed.UntilWorkersAsync(WorkerStates.Ready, 1);
    }

    [Fact]
    public async Task A_cloud_that_cannot_tell_leaves_the_idle_worker_leased()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 3);
        var first = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));
        await bed.ReleaseAsync(first.LeaseId, Instance);
        await bed.UntilWorkersAsync(WorkerStates.Idle, 1);
        await bed.AdvanceAsync(LongerThanTheCheckWindow);
        bed.Cloud.HealthUnknown = true;

        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));

        Assert.Equal(first.WorkerId, granted.WorkerId);
        Assert.True(granted.Reused);
        Assert.Contains(first.WorkerId, bed.Cloud.HealthChecks);
        Assert.Empty(bed.Cloud.Deprovisioned);
    }

    [Fact]
    public async Task A_worker_idle_within_the_window_is_reused_without_asking_the_cloud()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 3);
        var first = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));
        await bed.ReleaseAsync(first.LeaseId, Instance);
        await bed.UntilWorkersAsync(WorkerStates.Idle, 1);
        await bed.AdvanceAsync(TimeSpan.FromMinutes(1));
        // Were it asked, the cloud would call it dead.
        bed.Cloud.Dead[first.WorkerId] = true;

        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));

        Assert.Equal(first.WorkerId, granted.WorkerId);
        Assert.Empty(bed.Cloud.HealthChecks);
    }

    /// <summary>Two workers of the instance, both idle, the second released after the first.</summary>
    static async Task<(Guid Older, Guid Newer)> TwoIdleWorkersAsync(LifecycleBed bed)
    {
        var first = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));
        var second = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), Instance));
        await bed.ReleaseAsync(first.LeaseId, Instance);
        await Until(async () => (await bed.WorkersAsync()).Any(
            w => w.CorrelationId == first.WorkerId && w.CurrentState == WorkerStates.Idle), "the first worker idle");
        await bed.AdvanceAsync(TimeSpan.FromSeconds(1));
        await bed.ReleaseAsync(second.LeaseId, Instance);
        await bed.UntilWorkersAsync(WorkerStates.Idle, 2);
        return (first.WorkerId, second.WorkerId);
    }
}
