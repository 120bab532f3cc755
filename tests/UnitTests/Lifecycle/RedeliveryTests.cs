using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>
/// A process killed after saving a saga and before its outbox published loses those messages, and the broker
/// redelivers the message that caused them to a saga that has already moved on. Each test delivers a message a
/// second time (as the redelivery would) and checks that the step it should have triggered is sent again, and
/// that nothing is done twice. Allocation itself sends nothing (it is part of the saga's transaction), so what is
/// left to repeat is each saga's step after it. Found by reasoning over the chaos run's kill -9; see
/// docs/guarantees.md.
/// </summary>
public sealed class RedeliveryTests
{
    [Fact]
    public async Task A_repeated_request_while_waiting_starts_nothing_more_and_is_granted_once()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2, cloud: c => c.HoldProvisioning = true);
        var request = new LeaseRequested(Guid.NewGuid(), "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow());
        await bed.Bus.Publish(request);
        await Until(() => bed.Cloud.Held.Count == 1, "a worker provisioning for the lease");
        await bed.SettledAsync();

        await bed.Bus.Publish(request);
        await bed.SettledAsync();
        var held = Assert.Single(bed.Cloud.Held);
        await bed.Bus.Publish(
            new WorkerProvisioned(held.WorkerId, "10.0.0.1:10933", new string('A', 40), bed.Clock.GetUtcNow()));
        await Until(() => bed.Outcomes(request.LeaseId).Count > 0, "the grant");
        await bed.SettledAsync();

        Assert.Single(bed.Outcomes(request.LeaseId).OfType<LeaseGranted>().Distinct());
        Assert.Single(bed.Cloud.Trusted);
        Assert.Single(await bed.WorkersAsync());
    }

    [Fact]
    public async Task A_repeated_request_whose_trust_was_lost_asks_for_the_trust_again_and_is_granted_once()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 1, cloud: c => c.HoldTrust = true);
        await bed.UntilWorkersAsync("Ready", 1);
        var request = new LeaseRequested(Guid.NewGuid(), "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow());
        await bed.Bus.Publish(request);
        await bed.UntilWorkersAsync("Trusting", 1);
        await bed.SettledAsync();
        // As if the TrustWorker had died with the process that chose the worker: the cloud never answered it.
        bed.Cloud.HoldTrust = false;

        await bed.Bus.Publish(request);
        await Until(() => bed.Outcomes(request.LeaseId).Count == 1, "the grant");
        await bed.SettledAsync();

        var granted = Assert.IsType<LeaseGranted>(Assert.Single(bed.Outcomes(request.LeaseId)));
        Assert.Equal(2, bed.Cloud.Trusted.Count);
        Assert.Equal((granted.WorkerId, "instance-1"),
            bed.Cloud.Trusted.Select(t => (t.WorkerId, t.InstanceId)).Distinct().Single());
    }

    [Fact]
    public async Task A_redelivered_allocation_timeout_of_a_rejected_lease_sends_the_same_rejection_again()
    {
        // Found by the full chaos run: the rejection was saved, the broker restarted before it was published, and the
        // redelivered timeout (its token spent) answered nothing.
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true);
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilTimerAsync<LeaseAllocationTimedOut>(TimeSpan.FromMinutes(5));
        await bed.AdvanceAsync(TimeSpan.FromMinutes(5));
        await Until(() => bed.Outcomes(leaseId).Count == 1, "the NoCapacity rejection");
        await bed.SettledAsync();

        await bed.Bus.Publish(new LeaseAllocationTimedOut(leaseId));
        await Until(() => bed.Outcomes(leaseId).Count == 2, "the rejection sent again");

        var answers = bed.Outcomes(leaseId).Cast<LeaseRejected>().Distinct().ToList();
        Assert.Equal(LeaseRejectionReasons.NoCapacity, Assert.Single(answers).Reason);
        Assert.Equal("Rejected", (await bed.LeaseAsync(leaseId))!.CurrentState);
    }

    [Fact]
    public async Task A_redelivered_trust_confirmation_re_sends_the_grant_and_trusts_nothing_new()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));

        await bed.Bus.Publish(new WorkerTrusted(granted.WorkerId, granted.LeaseId, "instance-1", granted.WorkerThumbprint));
        await Until(() => bed.Outcomes(granted.LeaseId).Count == 2, "the grant answered again");
        await bed.SettledAsync();

        Assert.Equal(granted, bed.Outcomes(granted.LeaseId)[1]);
        Assert.Single(bed.Cloud.Trusted);
        Assert.Equal(1, (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).LeaseCount);
    }

    [Fact]
    public async Task A_redelivered_release_changes_nothing_and_the_worker_goes_idle_once()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);
        await bed.SettledAsync();
        var idle = (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId);

        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await bed.SettledAsync();

        var after = (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId);
        Assert.Equal(("Idle", idle.LastLeaseEndedAt, 1),
            (after.CurrentState, after.LastLeaseEndedAt, after.LeaseCount));
        Assert.Equal("Released", (await bed.LeaseAsync(granted.LeaseId))!.CurrentState);
    }

    [Fact]
    public async Task A_redelivered_revocation_publishes_the_revocation_again()
    {
        // The lease saved Revoked and died before its LeaseRevoked went out: the broker redelivers the worker's
        // RevokeLease.
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        var revoke = new RevokeLease(granted.LeaseId, granted.WorkerId, LeaseRevocationReasons.MaxWorkerAge);
        await bed.Bus.Publish(revoke);
        await Until(() => bed.PublishedOf<LeaseRevoked>().Count(r => r.LeaseId == granted.LeaseId) == 1,
            "the revocation");

        await bed.Bus.Publish(revoke);

        await Until(() => bed.PublishedOf<LeaseRevoked>().Count(r => r.LeaseId == granted.LeaseId) == 2,
            "the revocation published again");
        Assert.Single(bed.PublishedOf<LeaseRevoked>().Distinct());
        Assert.Equal("Revoked", (await bed.LeaseAsync(granted.LeaseId))!.CurrentState);
    }

    [Fact]
    public async Task A_worker_that_reaches_a_lease_which_ended_goes_idle_for_its_instance()
    {
        // The lease gave up waiting while its worker was still trusting: the worker's grant arrives to an ended lease.
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldTrust = true);
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilWorkersAsync("Trusting", 1);
        await bed.AdvanceAsync(TimeSpan.FromMinutes(5));
        await Until(() => bed.Outcomes(leaseId).Count == 1, "the NoCapacity rejection");
        var worker = (await bed.WorkersAsync()).Single().CorrelationId;

        await bed.Bus.Publish(new WorkerTrusted(worker, leaseId, "instance-1", new string('B', 40)));

        await bed.UntilWorkersAsync("Idle", 1);
        Assert.IsType<LeaseRejected>(Assert.Single(bed.Outcomes(leaseId)));
        Assert.Equal("instance-1", (await bed.WorkersAsync()).Single().TrustedInstanceId);
    }

    [Fact]
    public async Task A_late_trust_confirmation_or_a_redelivered_timeout_of_a_worker_being_deleted_asks_for_the_delete_again()
    {
        // Found by the short chaos run: the trust timed out in a LeaseSaga killed right after saving the worker as
        // Reaping, so its DeprovisionWorker was lost; only a late WorkerTrusted and the spent timeout came after.
        await using var bed =
            await StartAsync(hotTarget: 1, cloud: c => { c.HoldTrust = true; c.HoldDeprovisioning = true; });
        await bed.UntilWorkersAsync("Ready", 1);
        var worker = (await bed.WorkersAsync()).Single().CorrelationId;
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilWorkersAsync("Trusting", 1);
        // Trust has no timer of its own: once it is overdue, the sweep delivers one with no token.
        await bed.AdvanceAsync(TimeSpan.FromMinutes(7));
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.WorkerId == worker) == 1, "the first delete (lost)");

        await bed.Bus.Publish(new WorkerTrusted(worker, leaseId, "instance-1", new string('B', 40)));
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.WorkerId == worker) == 2,
            "the delete asked again for the late trust");
        await bed.Bus.Publish(new CheckWorkerDeadlines(worker));
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.WorkerId == worker) == 3,
            "the delete asked again for the spent timeout");
        await bed.SettledAsync();

        Assert.All(bed.Cloud.Deprovisioned.Where(d => d.WorkerId == worker), d => Assert.Equal("failed", d.Reason));
        Assert.Equal("Reaping", (await bed.WorkersAsync()).Single(w => w.CorrelationId == worker).CurrentState);
        Assert.DoesNotContain(bed.PublishedOf<WorkerLeased>(), l => l.WorkerId == worker);
    }

    [Fact]
    public async Task The_sweep_asks_again_for_the_delete_of_a_worker_still_not_deleted_after_the_deprovisioning_timeout()
    {
        await using var bed = await StartAsync(hotTarget: 1, cloud: c => c.HoldDeprovisioning = true);
        await bed.UntilWorkersAsync("Ready", 1);
        var worker = (await bed.WorkersAsync()).Single().CorrelationId;
        await bed.Bus.Publish(new SetPoolSize(Pool, 0, 3));
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.WorkerId == worker) == 1, "the first delete (lost)");
        await bed.SettledAsync();

        // Within the deprovisioning timeout (10 min) the delete may simply be slow: the sweep leaves it alone.
        await bed.AdvanceAsync(TimeSpan.FromMinutes(5));
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));
        await bed.SettledAsync();
        Assert.Single(bed.Cloud.Deprovisioned, d => d.WorkerId == worker);

        await bed.AdvanceAsync(TimeSpan.FromMinutes(7));
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.WorkerId == worker) == 2,
            "the sweep to ask for the delete again");
        bed.Cloud.HoldDeprovisioning = false;
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));
        await Until(async () => (await bed.WorkersAsync()).Count == 0, "the worker gone once its delete is confirmed");
    }

    [Fact]
    public async Task A_repeated_request_gets_the_very_grant_even_when_the_clock_has_sub_millisecond_ticks()
    {
        // The database keeps less than 100 ns ticks; the repeat answers from the stored row. Found by the chaos run.
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        bed.Clock.Advance(TimeSpan.FromTicks(1234567));
        var leaseId = Guid.NewGuid();

        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(leaseId, "instance-1"));

        Assert.Equal(0, granted.GrantedAt.Ticks % TimeSpan.TicksPerMillisecond);
        Assert.Equal(0, granted.ExpiresAt.Ticks % TimeSpan.TicksPerMillisecond);
        Assert.Equal(granted, await bed.RequestAsync(leaseId, "instance-1"));
    }
}
