using DynamicWorkers.LeaseSaga.Pools;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>The pool ledger's rules on their own, including the message orderings that are hard to force on a bus.</summary>
public sealed class PoolBookTests
{
    static readonly DateTimeOffset At = new(2026, 1, 5, 9, 0, 0, TimeSpan.Zero);
    static readonly string ThumbA = new('a', 40);

    static (PoolBook Book, Guid Worker, Guid Lease) WithAssignedWorker()
    {
        var book = new PoolBook();
        var worker = Guid.NewGuid();
        book.Started(worker, At);
        book.BecameReady(worker);
        var lease = Guid.NewGuid();
        book.Enqueue(new WaitingLease(lease, "instance-1", ThumbA, At));
        Assert.Single(book.Assign());
        return (book, worker, lease);
    }

    [Fact]
    public void A_late_repeat_of_a_served_lease_s_allocation_is_not_queued_again_and_takes_no_worker()
    {
        // Found by the lifecycle run once the pool took several messages at once: the repeat, overtaken by the lease's
        // whole life, queued the ended lease again; its instance's idle worker went to it, missing the next real lease.
        var (book, worker, lease) = WithAssignedWorker();
        book.BecameIdle(worker, lease);

        Assert.False(book.Enqueue(new WaitingLease(lease, "instance-1", ThumbA, At)));
        Assert.Empty(book.Waiting);
        Assert.Empty(book.Assign());
        Assert.Equal(worker, Assert.Single(book.Idle).WorkerId);
    }

    [Fact]
    public void Only_the_latest_served_leases_are_remembered()
    {
        var book = new PoolBook();
        var worker = Guid.NewGuid();
        book.Started(worker, At);
        book.BecameReady(worker);
        var first = Guid.NewGuid();
        var last = first;
        for (var i = 0; i <= PoolBook.ServedMemory; i++)
        {
            last = i == 0 ? first : Guid.NewGuid();
            book.Enqueue(new WaitingLease(last, "instance-1", ThumbA, At));
            Assert.Single(book.Assign());
            book.BecameIdle(worker, last);
        }

        Assert.Equal(PoolBook.ServedMemory, book.Served.Count);
        Assert.DoesNotContain(first, book.Served);
        Assert.Contains(last, book.Served);
    }

    [Fact]
    public void A_lease_beyond_the_line_s_limit_is_turned_away_unless_an_idle_worker_of_its_instance_can_serve_it()
    {
        var (book, worker, lease) = WithAssignedWorker();
        book.BecameIdle(worker, lease);
        var waiting = new WaitingLease(Guid.NewGuid(), "instance-2", ThumbA, At);
        var beyond = new WaitingLease(Guid.NewGuid(), "instance-3", ThumbA, At);
        var reuse = new WaitingLease(Guid.NewGuid(), "instance-1", ThumbA, At);
        book.Enqueue(waiting);
        book.Enqueue(beyond);
        book.Enqueue(reuse);

        Assert.False(book.TurnAway(waiting.LeaseId, maxWaiting: 1));
        Assert.True(book.TurnAway(beyond.LeaseId, maxWaiting: 1));
        Assert.False(book.TurnAway(reuse.LeaseId, maxWaiting: 1)); // its instance's idle worker serves it now
        Assert.Equal([waiting.LeaseId, reuse.LeaseId], book.Waiting.Select(w => w.LeaseId));
        Assert.Equal(reuse.LeaseId, Assert.Single(book.Assign()).LeaseId);
    }

    [Fact]
    public void A_late_repeat_of_the_idle_notice_of_a_worker_s_last_lease_leaves_its_next_lease_assigned()
    {
        var (book, worker, first) = WithAssignedWorker();
        book.BecameIdle(worker, first);
        var second = new WaitingLease(Guid.NewGuid(), "instance-1", ThumbA, At);
        book.Enqueue(second);
        Assert.True(Assert.Single(book.Assign()).Reuse);

        book.BecameIdle(worker, first); // re-sent after a redelivery, overtaken by the next lease

        Assert.Equal((worker, second.LeaseId), (Assert.Single(book.Assigned).WorkerId, book.Assigned[0].LeaseId));
        Assert.Empty(book.Idle);
        Assert.False(book.Enqueue(second)); // a repeated request for the second lease does not queue it again
    }

    [Fact]
    public void Workers_provisioning_since_before_a_cutoff_are_those_started_before_it_or_at_an_unrecorded_time()
    {
        var book = new PoolBook();
        var (old, young, unrecorded, ready) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        book.Started(old, At);
        book.Started(young, At.AddMinutes(40));
        book.Provisioning.Add(unrecorded); // a ledger saved before start times were kept
        book.Started(ready, At);
        book.BecameReady(ready);

        Assert.Equal([old, unrecorded], book.ProvisioningSince(At.AddMinutes(30)));
        book.Gone(old);
        Assert.DoesNotContain(old, book.StartedAt.Keys);
        Assert.Equal([young], book.StartedAt.Keys);
    }

    [Fact]
    public void A_retirement_request_that_overtakes_the_idle_notice_of_the_same_lease_is_approved()
    {
        var (book, worker, lease) = WithAssignedWorker();

        Assert.True(book.Retire(worker, lastLeaseId: lease));
        book.BecameIdle(worker, lease); // the late idle notice changes nothing

        Assert.Empty(book.Idle);
        Assert.Empty(book.Assigned);
        Assert.Equal(1, book.Live); // still counted while its VM is deleted
        book.Gone(worker);
        Assert.Equal(0, book.Live);
    }

    [Fact]
    public void A_repeated_retirement_request_is_approved_again_without_counting_the_worker_twice()
    {
        var (book, worker, lease) = WithAssignedWorker();
        book.BecameIdle(worker, lease);

        Assert.True(book.Retire(worker, lastLeaseId: lease));
        Assert.True(book.Retire(worker, lastLeaseId: lease));

        Assert.Equal([worker], book.Retiring);
        Assert.Equal(1, book.Live);
    }

    [Fact]
    public void A_retirement_request_is_refused_when_the_worker_was_just_handed_to_a_new_lease()
    {
        var (book, worker, lease) = WithAssignedWorker();
        book.BecameIdle(worker, lease);
        book.Enqueue(new WaitingLease(Guid.NewGuid(), "instance-1", ThumbA, At));
        Assert.True(Assert.Single(book.Assign()).Reuse);

        Assert.False(book.Retire(worker, lastLeaseId: lease));
        Assert.Single(book.Assigned);
    }

    [Fact]
    public void A_lease_that_gave_up_is_not_put_back_in_line_when_its_worker_fails()
    {
        var (book, worker, lease) = WithAssignedWorker();

        book.Cancel(lease);
        book.Requeue(lease);
        book.Gone(worker);

        Assert.Empty(book.Waiting);
        Assert.Equal(0, book.Live);
    }

    [Fact]
    public void A_lease_whose_worker_failed_goes_back_to_the_head_of_the_line()
    {
        var (book, worker, lease) = WithAssignedWorker();
        book.Enqueue(new WaitingLease(Guid.NewGuid(), "instance-2", ThumbA, At.AddSeconds(1)));

        book.Requeue(lease);
        book.Gone(worker);

        Assert.Equal(lease, book.Waiting[0].LeaseId);
    }

    [Fact]
    public void An_idle_worker_is_reused_only_for_the_same_instance_and_certificate()
    {
        var (book, worker, lease) = WithAssignedWorker();
        book.BecameIdle(worker, lease);

        book.Enqueue(new WaitingLease(Guid.NewGuid(), "instance-1", new string('b', 40), At));
        Assert.Empty(book.Assign());
        book.Enqueue(new WaitingLease(Guid.NewGuid(), "instance-1", ThumbA.ToUpperInvariant(), At));

        var reuse = Assert.Single(book.Assign());
        Assert.Equal((worker, true), (reuse.WorkerId, reuse.Reuse));
    }

    [Fact]
    public void Workers_being_retired_still_count_against_the_maximum()
    {
        var book = new PoolBook();
        var workers = Enumerable.Range(0, 3).Select(_ => Guid.NewGuid()).ToList();
        workers.ForEach(w => { book.Started(w, At); book.BecameReady(w); });

        Assert.Equal(2, book.Surplus(hotTarget: 1).Count);

        Assert.Equal(3, book.Live);
        Assert.Equal(0, book.WorkersToStart(hotTarget: 3, maxWorkers: 3));
    }
}
