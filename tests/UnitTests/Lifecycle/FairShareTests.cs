using DynamicWorkers.Contracts;
using DynamicWorkers.LeaseSaga.Workers;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>DESIGN.md's fair share per pool (Tenancy, invariant 8): the per-instance caps, and idle workers yielding to
/// a waiting lease.</summary>
public sealed class FairShareTests
{
    [Fact]
    public async Task An_instance_at_MaxLeasesPerInstance_gets_InstanceLimit_even_with_an_idle_worker_of_its_own()
    {
        await using var bed = await StartAsync(hotTarget: 2, maxWorkers: 3, maxLeasesPerInstance: 1);
        await bed.UntilWorkersAsync(WorkerStates.Ready, 2);
        var held = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-a"));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 2);
        // A second worker already idle for the instance: re-using it would be a second lease all the same.
        var idle = (await bed.WorkersAsync()).First(w => w.CurrentState == WorkerStates.Ready).CorrelationId;
        await bed.UpdateWorkerAsync(idle, w =>
        {
            w.CurrentState = WorkerStates.Idle;
            w.TrustedInstanceId = "instance-a";
            w.TrustedThumbprint = ThumbprintA;
            w.LastLeaseEndedAt = bed.Clock.GetUtcNow();
            w.IdleDeadline = bed.Clock.GetUtcNow() + TimeSpan.FromHours(1);
        });

        var limited = Assert.IsType<LeaseRejected>(await bed.RequestAsync(Guid.NewGuid(), "instance-a"));

        Assert.Equal(LeaseRejectionReasons.InstanceLimit, limited.Reason);
        Assert.Contains("MaxLeasesPerInstance", limited.Detail);
        Assert.Equal(WorkerStates.Idle, (await bed.WorkersAsync()).Single(w => w.CorrelationId == idle).CurrentState);
        // The cap is the instance's own: another instance still leases, and the instance again once it released.
        Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-b", ThumbprintB));
        await bed.ReleaseAsync(held.LeaseId, "instance-a");
        await bed.UntilLeaseAsync(held.LeaseId, "Released");
        Assert.True(Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-a")).Reused);
    }

    [Fact]
    public async Task Leases_waiting_in_line_count_toward_MaxLeasesPerInstance()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true,
            maxWaiting: 10, maxLeasesPerInstance: 2, maxWaitingPerInstance: 2);
        foreach (var leaseId in new[] { Guid.NewGuid(), Guid.NewGuid() })
        {
            await bed.Bus.Publish(
                new LeaseRequested(leaseId, "instance-a", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
            await bed.UntilLeaseAsync(leaseId, "WaitingForWorker");
        }

        var limited = Assert.IsType<LeaseRejected>(await bed.RequestAsync(Guid.NewGuid(), "instance-a"));

        // Granted or waiting, each is a lease the instance holds: once its waiting ones are served it holds no more
        // than its cap.
        Assert.Equal(LeaseRejectionReasons.InstanceLimit, limited.Reason);
        Assert.Contains("MaxLeasesPerInstance", limited.Detail);
    }

    [Fact]
    public async Task An_instance_at_MaxWaitingPerInstance_gets_InstanceLimit_while_another_instance_still_joins_the_line()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true,
            maxWaiting: 10, maxWaitingPerInstance: 2);
        var waiting = new[] { Guid.NewGuid(), Guid.NewGuid() };
        foreach (var leaseId in waiting)
        {
            await bed.Bus.Publish(
                new LeaseRequested(leaseId, "instance-a", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
            await bed.UntilLeaseAsync(leaseId, "WaitingForWorker");
        }

        var limited = Assert.IsType<LeaseRejected>(await bed.RequestAsync(Guid.NewGuid(), "instance-a"));
        var other = Guid.NewGuid();
        await bed.Bus.Publish(new LeaseRequested(other, "instance-b", ThumbprintB, Pool, null, bed.Clock.GetUtcNow()));

        Assert.Equal(LeaseRejectionReasons.InstanceLimit, limited.Reason);
        Assert.Contains("MaxWaitingPerInstance", limited.Detail);
        await bed.UntilLeaseAsync(other, "WaitingForWorker");
        Assert.Empty(bed.Outcomes(other));
    }

    [Fact]
    public async Task At_MaxWorkers_the_idle_worker_of_another_instance_idle_longest_is_retired_for_a_waiting_lease()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        var a = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-a"));
        var c = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-c", ThumbprintB));
        // C's worker goes idle first, A's a minute later: C's has been idle longest.
        await bed.ReleaseAsync(c.LeaseId, "instance-c");
        await bed.UntilWorkersAsync(WorkerStates.Idle, 1);
        await bed.AdvanceAsync(TimeSpan.FromMinutes(1));
        await bed.ReleaseAsync(a.LeaseId, "instance-a");
        await bed.UntilWorkersAsync(WorkerStates.Idle, 2);
        await bed.AdvanceAsync(TimeSpan.FromMinutes(1));

        var b = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-b", ThumbprintB));

        Assert.DoesNotContain(b.WorkerId, new[] { a.WorkerId, c.WorkerId });
        var retired = Assert.Single(bed.Cloud.Deprovisioned);
        Assert.Equal((c.WorkerId, ReapReasons.Idle), (retired.WorkerId, retired.Reason));
        var workers = await bed.WorkersAsync();
        Assert.Equal(WorkerStates.Idle, workers.Single(w => w.CorrelationId == a.WorkerId).CurrentState);
        Assert.True(workers.Count(w => WorkerStates.Live.Contains(w.CurrentState)) <= 2);
        Assert.Equal(3, bed.Cloud.Provisioned.Count);
    }

    [Fact]
    public async Task A_worker_released_at_MaxWorkers_while_another_instance_waits_is_retired_to_make_room()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1);
        var a = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-a"));
        var b = Guid.NewGuid();
        await bed.Bus.Publish(new LeaseRequested(b, "instance-b", ThumbprintB, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(b, "WaitingForWorker");
        await bed.SettledAsync();
        Assert.Empty(bed.Cloud.Deprovisioned);

        await bed.ReleaseAsync(a.LeaseId, "instance-a");

        await Until(() => bed.Outcomes(b).Count == 1, "B's grant");
        var granted = Assert.IsType<LeaseGranted>(bed.Outcomes(b)[0]);
        Assert.NotEqual(a.WorkerId, granted.WorkerId);
        var retired = Assert.Single(bed.Cloud.Deprovisioned);
        Assert.Equal((a.WorkerId, ReapReasons.Idle), (retired.WorkerId, retired.Reason));
    }

    [Fact]
    public async Task At_MaxWorkers_a_released_worker_does_not_go_to_its_instance_ahead_of_another_instance_that_waited_longer()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1);
        var a = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-a"));
        var b = Guid.NewGuid();
        await bed.Bus.Publish(new LeaseRequested(b, "instance-b", ThumbprintB, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(b, "WaitingForWorker");
        await bed.AdvanceAsync(TimeSpan.FromSeconds(1));
        var a2 = Guid.NewGuid();
        await bed.Bus.Publish(new LeaseRequested(a2, "instance-a", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(a2, "WaitingForWorker");
        await bed.SettledAsync();

        await bed.ReleaseAsync(a.LeaseId, "instance-a");

        // Whichever lease is granted first: B's, on a new worker once A's idle one is retired.
        await Until(() => bed.Outcomes(b).Count + bed.Outcomes(a2).Count > 0, "a grant");
        Assert.Empty(bed.Outcomes(a2));
        var granted = Assert.IsType<LeaseGranted>(Assert.Single(bed.Outcomes(b)));
        Assert.NotEqual(a.WorkerId, granted.WorkerId);
        var retired = Assert.Single(bed.Cloud.Deprovisioned);
        Assert.Equal((a.WorkerId, ReapReasons.Idle), (retired.WorkerId, retired.Reason));
        Assert.Equal("WaitingForWorker", (await bed.LeaseAsync(a2))?.CurrentState);
        // A's second lease is next in line: it is served once B releases.
        await bed.ReleaseAsync(b, "instance-b");
        await Until(() => bed.Outcomes(a2).Count == 1, "A's second grant");
        Assert.IsType<LeaseGranted>(bed.Outcomes(a2)[0]);
    }
}
