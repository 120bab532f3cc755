namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>A lease waiting for a worker, in arrival order.</summary>
public sealed record WaitingLease(Guid LeaseId, string InstanceId, string Thumbprint, DateTimeOffset RequestedAt);

/// <summary>A worker whose lease ended: available only to the instance (and certificate) it trusts.</summary>
public sealed record IdleWorker(Guid WorkerId, string InstanceId, string Thumbprint);

/// <summary>A worker handed to a lease (reserved, trusting or leased); <see cref="Cancelled"/> once the lease gave up waiting.</summary>
public sealed record AssignedWorker(Guid WorkerId, Guid LeaseId, string InstanceId, string Thumbprint, DateTimeOffset RequestedAt, bool Cancelled = false);

/// <summary>A decision: this worker serves this lease; <see cref="Reuse"/> when it already trusts the instance.</summary>
public sealed record Assignment(Guid WorkerId, Guid LeaseId, string InstanceId, string Thumbprint, bool Reuse);

/// <summary>
/// The pool's ledger of who is where, kept by the pool saga, the single writer of allocation decisions
/// for its pool (optimistic concurrency serialises them). Plain data and rules, so they can be tested alone.
/// Every operation is idempotent: the messages that drive it may be redelivered.
/// </summary>
public sealed class PoolBook
{
    public List<WaitingLease> Waiting { get; set; } = [];
    public List<Guid> Provisioning { get; set; } = [];

    /// <summary>When the pool started each worker still provisioning (lets the sweep tell a lost start from a slow one).</summary>
    public Dictionary<Guid, DateTimeOffset> StartedAt { get; set; } = [];
    public List<Guid> Ready { get; set; } = [];
    public List<IdleWorker> Idle { get; set; } = [];
    public List<AssignedWorker> Assigned { get; set; } = [];

    /// <summary>Taken off the lists to be deleted, but their VMs still exist until the worker reports gone.</summary>
    public List<Guid> Retiring { get; set; } = [];

    /// <summary>
    /// The latest leases whose worker came back idle (at most <see cref="ServedMemory"/>): a late repeat of such a
    /// lease's allocation (messages overtake each other) must not queue it again and take a worker for nothing.
    /// </summary>
    public List<Guid> Served { get; set; } = [];

    public const int ServedMemory = 256;

    /// <summary>Workers that count against <c>MaxWorkers</c>: every one not yet gone.</summary>
    public int Live => Provisioning.Count + Ready.Count + Idle.Count + Assigned.Count + Retiring.Count;

    /// <summary>Queues a lease unless it is already waiting or already has a worker (a redelivered request).</summary>
    public bool Enqueue(WaitingLease lease)
    {
        if (Waiting.Any(w => w.LeaseId == lease.LeaseId) || Assigned.Any(a => a.LeaseId == lease.LeaseId) || Served.Contains(lease.LeaseId))
        {
            return false;
        }

        Waiting.Add(lease);
        return true;
    }

    /// <summary>Puts a lease whose worker failed back at the head of the line, unless it gave up waiting meanwhile.</summary>
    public void Requeue(Guid leaseId)
    {
        var assigned = Assigned.FirstOrDefault(a => a.LeaseId == leaseId);
        if (assigned is null || Waiting.Any(w => w.LeaseId == leaseId))
        {
            return;
        }

        Assigned.Remove(assigned);
        if (!assigned.Cancelled)
        {
            Waiting.Insert(0, new WaitingLease(leaseId, assigned.InstanceId, assigned.Thumbprint, assigned.RequestedAt));
        }
    }

    /// <summary>The lease stopped waiting: out of the line, and never put back in it if its worker fails.</summary>
    public void Cancel(Guid leaseId)
    {
        Waiting.RemoveAll(w => w.LeaseId == leaseId);
        var index = Assigned.FindIndex(a => a.LeaseId == leaseId);
        if (index >= 0)
        {
            Assigned[index] = Assigned[index] with { Cancelled = true };
        }
    }

    /// <summary>
    /// Takes a lease back out of a line longer than <paramref name="maxWaiting"/> when it stands beyond that limit
    /// and no idle worker of its instance could serve it at once. True when it was turned away.
    /// </summary>
    public bool TurnAway(Guid leaseId, int maxWaiting)
    {
        var position = PositionOf(leaseId);
        if (position <= maxWaiting)
        {
            return false;
        }

        var lease = Waiting[position - 1];
        if (Idle.Any(i => i.InstanceId == lease.InstanceId && string.Equals(i.Thumbprint, lease.Thumbprint, StringComparison.OrdinalIgnoreCase)))
        {
            return false;
        }

        Waiting.RemoveAt(position - 1);
        return true;
    }

    public int PositionOf(Guid leaseId) => Waiting.FindIndex(w => w.LeaseId == leaseId) + 1;

    public void Started(Guid workerId, DateTimeOffset at)
    {
        if (!Provisioning.Contains(workerId))
        {
            Provisioning.Add(workerId);
            StartedAt[workerId] = at;
        }
    }

    /// <summary>Workers still provisioning that the pool started before <paramref name="cutoff"/> (or at a time it did not record).</summary>
    public IEnumerable<Guid> ProvisioningSince(DateTimeOffset cutoff)
        => Provisioning.Where(id => !StartedAt.TryGetValue(id, out var at) || at < cutoff);

    /// <summary>
    /// A started worker is ready: a hot worker from now on. False for a worker the ledger does not know at all (the
    /// sweep had it forgotten as never started, and its start came late after all).
    /// </summary>
    public bool BecameReady(Guid workerId)
    {
        StartedAt.Remove(workerId);
        if (Provisioning.Remove(workerId) && !Ready.Contains(workerId))
        {
            Ready.Add(workerId);
        }

        return Ready.Contains(workerId) || Idle.Any(i => i.WorkerId == workerId) || Assigned.Any(a => a.WorkerId == workerId) || Retiring.Contains(workerId);
    }

    /// <summary>
    /// The worker's lease <paramref name="leaseId"/> ended. A late repeat of the notice for an earlier lease changes
    /// nothing: the worker may already serve its next one (found by the chaos run).
    /// </summary>
    public void BecameIdle(Guid workerId, Guid leaseId)
    {
        var assigned = Assigned.FirstOrDefault(a => a.WorkerId == workerId && a.LeaseId == leaseId);
        if (assigned is not null && Idle.All(i => i.WorkerId != workerId))
        {
            Assigned.Remove(assigned);
            Idle.Add(new IdleWorker(workerId, assigned.InstanceId, assigned.Thumbprint));
            Served.Add(leaseId);
            if (Served.Count > ServedMemory)
            {
                Served.RemoveAt(0);
            }
        }
    }

    /// <summary>
    /// Takes a hot or idle worker off the lists so it can retire. False only when it was handed to a new lease
    /// meanwhile (it then serves that lease); an assignment to the lease it last served, whose idle notice is
    /// still on its way, or a worker the ledger does not know, does not hold it back.
    /// </summary>
    public bool Retire(Guid workerId, Guid? lastLeaseId)
    {
        var assigned = Assigned.FirstOrDefault(a => a.WorkerId == workerId);
        if (assigned is not null && assigned.LeaseId != lastLeaseId)
        {
            return false;
        }

        Forget(workerId);
        Retiring.Add(workerId);
        return true;
    }

    public void Gone(Guid workerId) => Forget(workerId);

    void Forget(Guid workerId)
    {
        Provisioning.Remove(workerId);
        StartedAt.Remove(workerId);
        Ready.Remove(workerId);
        Idle.RemoveAll(i => i.WorkerId == workerId);
        Assigned.RemoveAll(a => a.WorkerId == workerId);
        Retiring.Remove(workerId);
    }

    /// <summary>
    /// Serves waiting leases: a lease whose instance has an idle worker gets it (re-use, whatever its place in
    /// line, since that worker can serve no one else); hot workers go strictly first come, first served.
    /// </summary>
    public List<Assignment> Assign()
    {
        var assignments = new List<Assignment>();
        foreach (var lease in Waiting.ToList())
        {
            var idle = Idle.FirstOrDefault(i => i.InstanceId == lease.InstanceId && string.Equals(i.Thumbprint, lease.Thumbprint, StringComparison.OrdinalIgnoreCase));
            Guid workerId;
            if (idle is not null)
            {
                Idle.Remove(idle);
                workerId = idle.WorkerId;
            }
            else if (Ready.Count > 0)
            {
                workerId = Ready[0];
                Ready.RemoveAt(0);
            }
            else
            {
                continue;
            }

            Waiting.Remove(lease);
            Assigned.Add(new AssignedWorker(workerId, lease.LeaseId, lease.InstanceId, lease.Thumbprint, lease.RequestedAt));
            assignments.Add(new Assignment(workerId, lease.LeaseId, lease.InstanceId, lease.Thumbprint, idle is not null));
        }

        return assignments;
    }

    /// <summary>Hot workers beyond what the pool wants now (its target was lowered): taken off the list to retire, newest first.</summary>
    public List<Guid> Surplus(int hotTarget)
    {
        var surplus = new List<Guid>();
        while (Ready.Count > 0 && Ready.Count + Provisioning.Count > hotTarget + Waiting.Count)
        {
            surplus.Add(Ready[^1]);
            Ready.RemoveAt(Ready.Count - 1);
        }

        Retiring.AddRange(surplus);

        return surplus;
    }

    /// <summary>How many workers to start: enough for the hot target plus every lease still waiting, never above the maximum.</summary>
    public int WorkersToStart(int hotTarget, int maxWorkers)
    {
        var wanted = hotTarget + Waiting.Count - Ready.Count - Provisioning.Count;
        return Math.Max(0, Math.Min(wanted, maxWorkers - Live));
    }
}
