using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>
/// A process killed after saving a saga and before its outbox published loses those messages, and the broker
/// redelivers the message that caused them to a saga that has already moved on. Each test delivers a message a
/// second time (as the redelivery would) and checks that the step it should have triggered is sent again, and
/// that nothing is done twice. Found by reasoning over the chaos run's kill -9; see README "Guarantees".
/// </summary>
public sealed class RedeliveryTests
{
    [Fact]
    public async Task A_repeated_request_still_allocating_asks_the_pool_again_and_is_granted_once()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true);
        var request = new LeaseRequested(Guid.NewGuid(), "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow());
        await bed.Bus.Publish(request);
        await Until(() => bed.Cloud.Held.Count == 1, "a worker provisioning for the lease");
        await bed.SettledAsync();

        await bed.Bus.Publish(request);
        await bed.SettledAsync();
        var held = Assert.Single(bed.Cloud.Held);
        await bed.Bus.Publish(new WorkerProvisioned(held.WorkerId, "10.0.0.1:10933", new string('A', 40), bed.Clock.GetUtcNow()));
        await Until(() => bed.Outcomes(request.LeaseId).Count > 0, "the grant");
        await bed.SettledAsync();

        Assert.True(bed.PublishedOf<AllocateWorker>().Count(a => a.LeaseId == request.LeaseId) >= 2, "the repeat asked the pool again");
        var grants = bed.Outcomes(request.LeaseId).OfType<LeaseGranted>().Distinct().ToList();
        Assert.Single(grants);
        // A repeated reservation may ask the cloud to trust the same instance again: idempotent, one worker, one instance.
        Assert.Single(bed.Cloud.Trusted.Select(t => (t.WorkerId, t.InstanceId)).Distinct());
        Assert.Equal(1, (await bed.PoolAsync())!.Book.Live);
    }

    [Fact]
    public async Task A_redelivered_allocation_timeout_of_a_rejected_lease_sends_the_same_rejection_again()
    {
        // Found by the full chaos run: the rejection was saved, the broker restarted before it was published, and the
        // redelivered timeout (its token spent) answered nothing.
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true);
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
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
    public async Task A_repeated_allocation_of_a_lease_that_has_a_worker_re_sends_the_reservation()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        var allocation = bed.PublishedOf<AllocateWorker>().Single(a => a.LeaseId == granted.LeaseId);

        await bed.Bus.Publish(allocation);
        await Until(() => bed.PublishedOf<ReserveWorker>().Count(r => r.LeaseId == granted.LeaseId) == 2, "the reservation sent again");
        await Until(() => bed.Outcomes(granted.LeaseId).Count == 2, "the grant answered again");
        await bed.SettledAsync();

        Assert.Equal(granted, bed.Outcomes(granted.LeaseId)[1]);
        Assert.Single(bed.Cloud.Trusted);
        Assert.Equal("Leased", (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).CurrentState);
    }

    [Fact]
    public async Task A_late_idle_notice_and_a_late_allocation_never_give_a_served_lease_a_second_worker_for_good()
    {
        // Found by the chaos run: an instance with two idle workers; the idle notice of one worker's previous lease,
        // re-sent after a redelivery, reached the pool after that worker had started its next lease, and freed that
        // lease's assignment; a late repeat of the lease's allocation then got it a second worker, which the lease
        // (already granted) ignored, so the second worker stayed leased for nothing.
        await using var bed = await StartAsync(hotTarget: 2, maxWorkers: 2);
        await bed.UntilWorkersAsync("Ready", 2);
        var first = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        var other = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.ReleaseAsync(first.LeaseId, "instance-1");
        await bed.ReleaseAsync(other.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 2);
        var next = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        var previousLease = next.WorkerId == first.WorkerId ? first.LeaseId : other.LeaseId;
        await bed.SettledAsync();

        var reservations = bed.PublishedOf<ReserveWorker>().Count(r => r.WorkerId == next.WorkerId && r.LeaseId == next.LeaseId);
        await bed.Bus.Publish(new WorkerIdle(Pool, next.WorkerId, "instance-1", previousLease));
        await bed.SettledAsync();
        Assert.Contains((await bed.PoolAsync())!.Book.Assigned, a => a.WorkerId == next.WorkerId && a.LeaseId == next.LeaseId);
        // The pool cannot tell a late notice from a worker that missed its reservation: it reserves it again (a no-op here).
        await Until(() => bed.PublishedOf<ReserveWorker>().Count(r => r.WorkerId == next.WorkerId && r.LeaseId == next.LeaseId) > reservations, "the reservation sent again");

        await bed.Bus.Publish(bed.PublishedOf<AllocateWorker>().First(a => a.LeaseId == next.LeaseId));
        await bed.SettledAsync();
        Assert.All(bed.PublishedOf<ReserveWorker>().Where(r => r.LeaseId == next.LeaseId), r => Assert.Equal(next.WorkerId, r.WorkerId));

        // Should a second worker still reach the granted lease, the lease keeps its own and sends the other idle.
        var spare = next.WorkerId == first.WorkerId ? other.WorkerId : first.WorkerId;
        await bed.Bus.Publish(new ReserveWorker(spare, next.LeaseId, "instance-1", ThumbprintA));
        await Until(() => bed.PublishedOf<EndLease>().Any(e => e.WorkerId == spare && e.LeaseId == next.LeaseId), "the second worker sent idle");
        // The worker takes the EndLease in a message of its own: wait for it rather than for a quiet bus.
        await Until(async () => (await bed.WorkersAsync()).Single(w => w.CorrelationId == spare).CurrentState == "Idle", "the second worker idle");
        await bed.SettledAsync();
        Assert.Equal(next.WorkerId, (await bed.LeaseAsync(next.LeaseId))!.WorkerId);
        Assert.Equal("Granted", (await bed.LeaseAsync(next.LeaseId))!.CurrentState);
    }

    [Fact]
    public async Task A_redelivered_provisioned_notice_tells_the_pool_again_that_the_worker_is_ready()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var worker = (await bed.WorkersAsync()).Single();
        await bed.SettledAsync();

        await bed.Bus.Publish(new WorkerProvisioned(worker.CorrelationId, worker.Address!, worker.AgentThumbprint!, worker.ProvisionedAt!.Value));
        await Until(() => bed.PublishedOf<WorkerReady>().Count(r => r.WorkerId == worker.CorrelationId) == 2, "WorkerReady sent again");
        await bed.SettledAsync();

        var book = (await bed.PoolAsync())!.Book;
        Assert.Equal([worker.CorrelationId], book.Ready);
        Assert.Equal(1, book.Live);
    }

    [Fact]
    public async Task A_redelivered_trust_confirmation_re_sends_the_grant_and_trusts_nothing_new()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));

        await bed.Bus.Publish(new WorkerTrusted(granted.WorkerId, "instance-1", granted.WorkerThumbprint));
        await Until(() => bed.Outcomes(granted.LeaseId).Count == 2, "the grant answered again");
        await bed.SettledAsync();

        Assert.Equal(granted, bed.Outcomes(granted.LeaseId)[1]);
        Assert.Single(bed.Cloud.Trusted);
        Assert.Equal(1, (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).LeaseCount);
    }

    [Fact]
    public async Task A_redelivered_release_ends_the_worker_s_lease_again_and_the_worker_goes_idle_once()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);
        await bed.SettledAsync();

        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await Until(() => bed.PublishedOf<EndLease>().Count(e => e.LeaseId == granted.LeaseId) == 2, "EndLease sent again");
        await Until(() => bed.PublishedOf<WorkerIdle>().Count(e => e.WorkerId == granted.WorkerId) == 2, "WorkerIdle sent again");
        await bed.SettledAsync();

        Assert.Equal("Idle", (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).CurrentState);
        Assert.Single((await bed.PoolAsync())!.Book.Idle);
    }

    [Fact]
    public async Task A_late_trust_confirmation_or_a_redelivered_timeout_of_a_worker_being_deleted_asks_for_the_delete_again()
    {
        // Found by the short chaos run: the trust timed out in a LeaseSaga killed right after saving the worker as
        // Reaping, so its DeprovisionWorker was lost; only a late WorkerTrusted and the spent timeout came after.
        await using var bed = await StartAsync(hotTarget: 1, cloud: c => { c.HoldTrust = true; c.HoldDeprovisioning = true; });
        await bed.UntilWorkersAsync("Ready", 1);
        var worker = (await bed.WorkersAsync()).Single().CorrelationId;
        await bed.Bus.Publish(new LeaseRequested(Guid.NewGuid(), "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilWorkersAsync("Trusting", 1);
        await bed.UntilTimerAsync<WorkerTrustTimedOut>(TimeSpan.FromMinutes(5));
        await bed.AdvanceAsync(TimeSpan.FromMinutes(5));
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.WorkerId == worker) == 1, "the first delete (lost)");

        await bed.Bus.Publish(new WorkerTrusted(worker, "instance-1", new string('B', 40)));
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.WorkerId == worker) == 2, "the delete asked again for the late trust");
        await bed.Bus.Publish(new WorkerTrustTimedOut(worker));
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.WorkerId == worker) == 3, "the delete asked again for the spent timeout");
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
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.WorkerId == worker) == 2, "the sweep to ask for the delete again");
        bed.Cloud.HoldDeprovisioning = false;
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));
        await Until(async () => (await bed.WorkersAsync()).Count == 0, "the worker gone once its delete is confirmed");
    }

    [Fact]
    public async Task A_deleted_worker_tells_the_pool_it_is_gone_once_more_so_a_lost_notice_cannot_keep_it_counted()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var worker = (await bed.WorkersAsync()).Single();

        await bed.Bus.Publish(new SetPoolSize(Pool, 0, 3));
        await Until(async () => (await bed.WorkersAsync()).Count == 0, "the hot worker retired and deleted");
        await bed.SettledAsync();

        Assert.Equal(2, bed.PublishedOf<WorkerGone>().Count(g => g.WorkerId == worker.CorrelationId));
        Assert.Equal(0, (await bed.PoolAsync())!.Book.Live);
    }

    [Fact]
    public async Task A_lease_that_gives_up_re_sends_the_reservation_of_the_worker_it_was_given()
    {
        // The pool believes its worker is ready (the notice is delivered while the worker saga is still
        // provisioning), so the reservation reaches a worker that cannot take it: a lost reservation, as far as the
        // lease can tell. When the lease gives up, the pool reserves that worker again instead of leaving it assigned.
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 1, cloud: c => c.HoldProvisioning = true);
        await Until(() => bed.Cloud.Held.Count == 1, "a worker provisioning");
        var workerId = bed.Cloud.Held.Single().WorkerId;
        await bed.Bus.Publish(new WorkerReady(Pool, workerId));
        await Until(async () => (await bed.PoolAsync())!.Book.Ready.Contains(workerId), "the pool to count the worker ready");
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await Until(() => bed.PublishedOf<ReserveWorker>().Any(r => r.LeaseId == leaseId), "the reservation");

        // The pool answered at once, so the lease never waited in line and has no allocation timer: the sweep gives it up
        // once its deadline (5 min after it arrived) is further past than the sweep's grace.
        await bed.SettledAsync();
        Assert.Null((await bed.LeaseAsync(leaseId))!.AllocationTimeoutToken);
        await bed.AdvanceAsync(TimeSpan.FromMinutes(5.5));
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));
        await bed.SettledAsync();
        Assert.Empty(bed.Outcomes(leaseId));
        await bed.AdvanceAsync(TimeSpan.FromMinutes(1));
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));
        await Until(() => bed.Outcomes(leaseId).Count == 1, "the NoCapacity rejection");
        await Until(() => bed.PublishedOf<ReserveWorker>().Count(r => r.LeaseId == leaseId && r.WorkerId == workerId) == 2, "the reservation sent again");

        Assert.Equal(LeaseRejectionReasons.NoCapacity, Assert.IsType<LeaseRejected>(bed.Outcomes(leaseId)[0]).Reason);
        Assert.Contains((await bed.PoolAsync())!.Book.Assigned, a => a.LeaseId == leaseId && a.Cancelled);
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
