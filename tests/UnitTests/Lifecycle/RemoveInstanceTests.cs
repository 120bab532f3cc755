using DynamicWorkers.Contracts;
using DynamicWorkers.LeaseSaga.Instances;
using DynamicWorkers.LeaseSaga.Persistence;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>Offboarding: every open lease of the instance revoked, its workers deleted, its settings dropped; others
/// untouched.</summary>
public sealed class RemoveInstanceTests
{
    [Fact]
    public async Task Removing_an_instance_revokes_its_leases_deletes_its_workers_and_drops_its_settings_once()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 3);
        var held = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        var second = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.ReleaseAsync(second.LeaseId, "instance-1");
        await Until(async () => (await bed.WorkersAsync())
            .Any(w => w.CorrelationId == second.WorkerId && w.CurrentState == "Idle"), "the second worker idle");
        var other = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-2"));
        await bed.Bus.Publish(new SetInstanceLifecycle("instance-1", TimeSpan.FromMinutes(5), null, null));
        await Until(async () => await LifecycleRowsAsync(bed) == 1, "instance-1's settings stored");
        await bed.SettledAsync();

        var client = bed.Harness.GetRequestClient<RemoveInstance>();
        var removed =
            (await client.GetResponse<InstanceRemoved>(new RemoveInstance("instance-1", "offboarded"))).Message;

        Assert.Equal(new InstanceRemoved("instance-1", 1, 2), removed);
        var revoked = Assert.Single(bed.PublishedOf<LeaseRevoked>());
        Assert.Equal(new LeaseRevoked(held.LeaseId, "instance-1", held.WorkerId,
            LeaseRevocationReasons.InstanceRemoved), revoked);
        Assert.Equal("Revoked", (await bed.LeaseAsync(held.LeaseId))!.CurrentState);
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.Reason == "instance_removed") == 2,
            "both workers of instance-1 deleted");
        Assert.Equal(new[] { held.WorkerId, second.WorkerId }.Order(),
            bed.Cloud.Deprovisioned.Where(d => d.Reason == "instance_removed").Select(d => d.WorkerId).Order());
        Assert.Equal(0, await LifecycleRowsAsync(bed));
        // The other instance keeps its lease; instance-1's late release of its revoked lease only gets the revocation
        // again.
        await bed.ReleaseAsync(held.LeaseId, "instance-1");
        await Until(() => bed.PublishedOf<LeaseRevoked>().Count == 2,
            "the revocation published again for the late release");
        Assert.All(bed.PublishedOf<LeaseRevoked>(), r => Assert.Equal(revoked, r));
        Assert.Equal("Revoked", (await bed.LeaseAsync(held.LeaseId))!.CurrentState);
        Assert.Equal("Granted", (await bed.LeaseAsync(other.LeaseId))!.CurrentState);

        var again = (await client.GetResponse<InstanceRemoved>(new RemoveInstance("instance-1", null))).Message;
        Assert.Equal(new InstanceRemoved("instance-1", 0, 0), again);
        Assert.Equal(2, bed.PublishedOf<LeaseRevoked>().Count);
    }

    [Fact]
    public async Task A_lease_still_waiting_is_revoked_with_no_worker()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1);
        var other = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-2"));
        var waiting = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(waiting, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(waiting, "WaitingForWorker");

        var removed = (await bed.Harness.GetRequestClient<RemoveInstance>()
            .GetResponse<InstanceRemoved>(new RemoveInstance("instance-1", null))).Message;

        Assert.Equal(new InstanceRemoved("instance-1", 1, 0), removed);
        Assert.Equal(new LeaseRevoked(waiting, "instance-1", Guid.Empty, LeaseRevocationReasons.InstanceRemoved),
            Assert.Single(bed.PublishedOf<LeaseRevoked>()));
        // Its allocation timer falls due later and changes nothing; the other instance keeps its lease.
        await bed.AdvanceAsync(TimeSpan.FromMinutes(10));
        await bed.SettledAsync();
        Assert.Equal("Revoked", (await bed.LeaseAsync(waiting))!.CurrentState);
        Assert.Empty(bed.Outcomes(waiting));
        Assert.Equal("Granted", (await bed.LeaseAsync(other.LeaseId))!.CurrentState);

        // A late release of it gets the revocation again, with no worker, and faults nothing.
        await bed.ReleaseAsync(waiting, "instance-1");
        await Until(() => bed.PublishedOf<LeaseRevoked>().Count == 2,
            "the revocation published again for the late release");
        Assert.All(bed.PublishedOf<LeaseRevoked>(), r => Assert.Equal(Guid.Empty, r.WorkerId));
        Assert.False(await bed.Harness.Published.Any<Fault<LeaseReleased>>());
    }

    static async Task<int> LifecycleRowsAsync(LifecycleBed bed)
    {
        await using var scope = bed.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>().Set<InstanceLifecycle>()
            .CountAsync();
    }
}
