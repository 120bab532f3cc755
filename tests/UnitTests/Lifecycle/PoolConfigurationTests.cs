using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>
/// Pools added to and removed from a reloaded configuration while the services run: an added pool opens and fills, a
/// removed one drains (its line rejected, its free workers deleted at once, busy ones when they are done, none started)
/// and every message about it is handled without a fault; a pool that comes back resumes at the size it remembers.
/// </summary>
public sealed class PoolConfigurationTests
{
    const string Extra = "extra";

    [Fact]
    public async Task A_pool_added_at_run_time_is_opened_filled_to_its_hot_target_and_serves_leases()
    {
        await using var bed = await StartAsync(hotTarget: 0);

        bed.AddPool(Extra, hotTarget: 2, maxWorkers: 3);

        await UntilWorkersOfAsync(bed, Extra, WorkerStates.Ready, 2);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1", pool: Extra));
        Assert.Equal(Extra, (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).Pool);
        Assert.Contains(Extra, await ListedPoolsAsync(bed));
        Assert.False(bed.AnyMessageFailed());
    }

    [Fact]
    public async Task A_removed_pool_deletes_its_hot_and_idle_workers_at_once_its_leased_one_when_the_lease_ends_and_resumes_when_added_again()
    {
        await using var bed = await StartAsync(hotTarget: 0);
        bed.AddPool(Extra, hotTarget: 1, maxWorkers: 3);
        await UntilWorkersOfAsync(bed, Extra, WorkerStates.Ready, 1);
        var held = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1", pool: Extra));
        await UntilWorkersOfAsync(bed, Extra, WorkerStates.Ready, 1);
        var ended = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-2", pool: Extra));
        await bed.ReleaseAsync(ended.LeaseId, "instance-2");
        await UntilWorkersOfAsync(bed, Extra, WorkerStates.Idle, 1);
        await UntilWorkersOfAsync(bed, Extra, WorkerStates.Ready, 1);
        await bed.SettledAsync();
        var hot = (await bed.WorkersAsync()).Single(w => w.CurrentState == WorkerStates.Ready).CorrelationId;
        var provisioned = bed.Cloud.Provisioned.Count;

        bed.RemovePool(Extra);

        await Until(() => bed.Cloud.Deprovisioned.Count == 2, "the hot and the idle worker deleted");
        Assert.Equal(new[] { hot, ended.WorkerId }.Order(), bed.Cloud.Deprovisioned.Select(d => d.WorkerId).Order());
        Assert.All(bed.Cloud.Deprovisioned, d => Assert.Equal(ReapReasons.Idle, d.Reason));
        Assert.Equal(WorkerStates.Leased,
            (await bed.WorkersAsync()).Single(w => w.CorrelationId == held.WorkerId).CurrentState);
        Assert.Equal("Granted", (await bed.LeaseAsync(held.LeaseId))!.CurrentState);
        Assert.DoesNotContain(Extra, await ListedPoolsAsync(bed));

        // Late commands about the removed pool: the size is remembered, nothing starts, nothing faults.
        await bed.Bus.Publish(new SetPoolSize(Extra, 2, 4));
        await bed.Bus.Publish(new PoolBackoffEnded(Extra));
        await bed.Bus.Publish(new ReconcilePool(Extra));
        await bed.SettledAsync();
        Assert.Equal((2, 4), await SizeOfAsync(bed, Extra));

        await bed.ReleaseAsync(held.LeaseId, "instance-1");
        await Until(async () => !(await bed.WorkersAsync()).Any(), "the leased worker deleted once its lease ended");
        Assert.Equal(ReapReasons.Idle, bed.Cloud.Deprovisioned.Single(d => d.WorkerId == held.WorkerId).Reason);
        Assert.Equal("Released", (await bed.LeaseAsync(held.LeaseId))!.CurrentState);
        Assert.Equal(provisioned, bed.Cloud.Provisioned.Count);
        Assert.False(bed.AnyMessageFailed());

        bed.AddPool(Extra, hotTarget: 1, maxWorkers: 3);

        await UntilWorkersOfAsync(bed, Extra, WorkerStates.Ready, 2);
        Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-3", pool: Extra));
        Assert.False(bed.AnyMessageFailed());
    }

    [Fact]
    public async Task A_removed_pool_rejects_its_waiting_leases_at_once_and_deletes_its_provisioning_workers_once_they_report()
    {
        await using var bed = await StartAsync(hotTarget: 0);
        bed.AddPool(Extra, hotTarget: 0, maxWorkers: 2);
        await bed.SettledAsync();
        bed.Cloud.HoldProvisioning = true;
        Guid[] waiting = [Guid.NewGuid(), Guid.NewGuid()];
        for (var i = 0; i < waiting.Length; i++)
        {
            await bed.Bus.Publish(
                new LeaseRequested(waiting[i], $"instance-{i}", ThumbprintA, Extra, null, bed.Clock.GetUtcNow()));
            await bed.UntilLeaseAsync(waiting[i], "WaitingForWorker");
        }

        await Until(() => bed.Cloud.Held.Count == 2, "a worker provisioning for each waiting lease");
        await bed.SettledAsync();

        bed.RemovePool(Extra);

        await Until(() => waiting.All(id => bed.Outcomes(id).Count > 0), "both waiting leases answered");
        foreach (var id in waiting)
        {
            var rejected = Assert.IsType<LeaseRejected>(Assert.Single(bed.Outcomes(id)));
            Assert.Equal(LeaseRejectionReasons.UnknownPool, rejected.Reason);
            Assert.Contains("was removed from configuration", rejected.Detail);
        }

        Assert.Empty(bed.Cloud.Deprovisioned);
        var (started, failed) = (bed.Cloud.Held.First().WorkerId, bed.Cloud.Held.Last().WorkerId);
        await bed.Bus.Publish(
            new WorkerProvisioned(started, "10.0.0.9:10933", new string('A', 40), bed.Clock.GetUtcNow()));
        await bed.Bus.Publish(new WorkerProvisioningFailed(failed, "QuotaExceeded"));
        await Until(() => bed.Cloud.Deprovisioned.Count == 2, "both workers deleted once they reported");
        Assert.Equal(ReapReasons.Idle, bed.Cloud.Deprovisioned.Single(d => d.WorkerId == started).Reason);
        Assert.Equal(ReapReasons.Failed, bed.Cloud.Deprovisioned.Single(d => d.WorkerId == failed).Reason);
        Assert.Empty(bed.Cloud.Trusted);

        // Their allocation timers were cancelled: nothing answers them a second time.
        await bed.AdvanceAsync(TimeSpan.FromMinutes(10));
        await bed.SettledAsync();
        Assert.All(waiting, id => Assert.Single(bed.Outcomes(id)));
        Assert.Equal(2, bed.Cloud.Provisioned.Count);
        Assert.Empty(await bed.WorkersAsync());
        Assert.False(bed.AnyMessageFailed());
    }

    [Fact]
    public async Task A_lease_whose_worker_fails_to_trust_after_its_pool_was_removed_is_rejected_not_requeued()
    {
        await using var bed = await StartAsync(hotTarget: 0);
        bed.AddPool(Extra, hotTarget: 1, maxWorkers: 2);
        await UntilWorkersOfAsync(bed, Extra, WorkerStates.Ready, 1);
        bed.Cloud.HoldTrust = true;
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Extra, null, bed.Clock.GetUtcNow()));
        await Until(() => !bed.Cloud.Trusted.IsEmpty, "the hot worker trusting for the lease");
        var trusting = bed.Cloud.Trusted.Single().WorkerId;
        await UntilWorkersOfAsync(bed, Extra, WorkerStates.Ready, 1);
        await bed.SettledAsync();

        bed.RemovePool(Extra);
        await Until(() => bed.Cloud.Deprovisioned.Count == 1, "the replacement hot worker deleted");
        await bed.Bus.Publish(new WorkerTrustFailed(trusting, "instance-1", "RunCommandFailed"));

        await Until(() => bed.Outcomes(leaseId).Count > 0, "the lease answered");
        Assert.Equal(LeaseRejectionReasons.UnknownPool,
            Assert.IsType<LeaseRejected>(Assert.Single(bed.Outcomes(leaseId))).Reason);
        await Until(async () => !(await bed.WorkersAsync()).Any(), "every worker of the removed pool deleted");
        Assert.Equal(ReapReasons.Failed, bed.Cloud.Deprovisioned.Single(d => d.WorkerId == trusting).Reason);
        Assert.Equal(2, bed.Cloud.Provisioned.Count);
        Assert.False(bed.AnyMessageFailed());
    }

    [Fact]
    public async Task A_pool_added_and_removed_before_it_was_ever_opened_is_reconciled_without_a_fault()
    {
        await using var bed = await StartAsync(hotTarget: 0);

        await bed.Bus.Publish(new ReconcilePool("gone"));
        await bed.SettledAsync();

        Assert.Empty(await bed.WorkersAsync());
        Assert.False(bed.AnyMessageFailed());
    }

    [Fact]
    public async Task A_reloaded_configuration_that_fails_validation_is_ignored_and_the_pools_stay_as_they_were()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await UntilWorkersOfAsync(bed, Pool, WorkerStates.Ready, 1);

        // No pool left: invalid ("at least one pool must be configured").
        bed.RemovePool(Pool);

        Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await UntilWorkersOfAsync(bed, Pool, WorkerStates.Ready, 1);
        Assert.Contains(Pool, await ListedPoolsAsync(bed));
        Assert.False(bed.AnyMessageFailed());

        // The next valid reload applies.
        bed.AddPool(Extra, hotTarget: 1, maxWorkers: 2);
        await UntilWorkersOfAsync(bed, Extra, WorkerStates.Ready, 1);
        Assert.DoesNotContain(Pool, await ListedPoolsAsync(bed));
    }

    static Task UntilWorkersOfAsync(LifecycleBed bed, string pool, string state, int count)
        => Until(async () => (await bed.WorkersAsync()).Count(w => w.Pool == pool && w.CurrentState == state) == count,
            $"{count} worker(s) of {pool} {state}");

    static async Task<IReadOnlyList<string>> ListedPoolsAsync(LifecycleBed bed)
        => (await bed.Harness.GetRequestClient<GetPoolStatus>().GetResponse<PoolStatus>(new GetPoolStatus(null)))
            .Message.Pools.Select(p => p.Pool).ToList();

    static async Task<(int HotTarget, int MaxWorkers)> SizeOfAsync(LifecycleBed bed, string pool)
    {
        await using var scope = bed.Services.CreateAsyncScope();
        var row = await scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>().Set<PoolState>()
            .AsNoTracking().SingleAsync(p => p.Name == pool);
        return (row.HotTarget, row.MaxWorkers);
    }
}
