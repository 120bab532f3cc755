using DynamicWorkers.Contracts;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>What a run observed, for the invariant checker: every request sent, every answer, every release.</summary>
public sealed class LeaseLedger
{
    readonly object _gate = new();
    readonly List<LeaseRequested> _requests = [];
    readonly List<(object Outcome, DateTime At)> _outcomes = [];
    readonly Dictionary<Guid, DateTime> _released = [];

    public void Requested(LeaseRequested request)
    {
        lock (_gate)
        {
            _requests.Add(request);
        }
    }

    public void Answered(object outcome)
    {
        lock (_gate)
        {
            _outcomes.Add((outcome, DateTime.UtcNow));
        }
    }

    public void Released(Guid leaseId)
    {
        lock (_gate)
        {
            _released[leaseId] = DateTime.UtcNow;
        }
    }

    public IReadOnlyList<LeaseRequested> Requests { get { lock (_gate) { return _requests.ToList(); } } }

    public IReadOnlyList<(object Outcome, DateTime At)> Outcomes { get { lock (_gate) { return _outcomes.ToList(); } } }

    public IReadOnlyDictionary<Guid, DateTime> ReleasedAt { get { lock (
        _gate) { return new Dictionary<Guid, DateTime>(_released); } } }

    public IReadOnlyList<object> OutcomesOf(Guid leaseId)
        => Outcomes.Where(o => LeaseIdOf(o.Outcome) == leaseId).Select(o => o.Outcome).ToList();

    public static Guid LeaseIdOf(object outcome) => outcome switch
    {
        LeaseGranted g => g.LeaseId,
        LeaseRejected r => r.LeaseId,
        _ => Guid.Empty,
    };
}

/// <summary>
/// The design's invariants, checked over what a run observed: the client's requests and answers, the cloud's
/// records and the service's own rows. One checker for the lifecycle, chaos and benchmark runs; it returns every
/// violation it finds (none means the run was clean). <paramref name="expectAllDeleted"/>: the run ended with the pool
/// drained.
/// </summary>
public static class InvariantChecker
{
    public static IReadOnlyList<string> Check(LeaseLedger ledger, IReadOnlyList<CloudRecord> cloud,
        ServiceRecord service, bool expectAllDeleted)
    {
        var violations = new List<string>();
        var requestsById = ledger.Requests.GroupBy(r => r.LeaseId).ToDictionary(g => g.Key, g => g.First());

        // 4. Every LeaseRequested gets exactly one outcome per LeaseId; duplicates get the same one.
        foreach (var (leaseId, request) in requestsById)
        {
            var outcomes = ledger.OutcomesOf(leaseId)
                .Where(o => o is not LeaseRejected { Reason: LeaseRejectionReasons.LeaseIdConflict }).ToList();
            if (outcomes.Count == 0)
            {
                violations.Add($"lease {leaseId} of {request.InstanceId}: no outcome");
            }
            else if (outcomes.Distinct().Count() > 1)
            {
                violations.Add($"lease {leaseId}: {outcomes.Distinct().Count()} different outcomes: "
                    + $"{string.Join(" | ", outcomes.Distinct())}");
            }
        }

        // One grant per lease (check 4 above reports a lease granted twice differently).
        var grants = ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseGranted>().DistinctBy(g => g.LeaseId).ToList();

        // 1. A worker serves at most one lease at a time, by the service's own times (a client records its release
        // before sending it): each grant on a worker comes after the previous lease on it ended.
        foreach (var worker in service.Leases.Where(l => l is { GrantedAt: not null, WorkerId: not null })
            .GroupBy(l => l.WorkerId))
        {
            var ordered = worker.OrderBy(l => l.GrantedAt).ToList();
            for (var i = 1; i < ordered.Count; i++)
            {
                // Grant times are stored in whole milliseconds, end times are not.
                var previousEnd = ordered[i - 1].EndedAt;
                if (previousEnd is null || previousEnd.Value.AddTicks(
                    -(previousEnd.Value.Ticks % TimeSpan.TicksPerMillisecond)) > ordered[i].GrantedAt)
                {
                    violations.Add($"worker {worker.Key}: lease {ordered[i].LeaseId} granted at "
                        + $"{ordered[i].GrantedAt:O} while lease {ordered[i - 1].LeaseId} "
                                   + $"still held it (ended {previousEnd?.ToString("O") ?? "never"})");
                }
            }
        }

        // 2. A worker trusts at most one instance over its whole life, and only that instance leases it. A trust
        // command for a second instance is the violation even when the cloud refuses it: the service must never send
        // one, and a real cloud need not refuse.
        foreach (var vm in cloud.Where(v => v.Trusts.Select(t => t.InstanceId).Distinct().Count() > 1))
        {
            violations.Add($"VM {vm.WorkerId} was asked to trust "
                + $"{string.Join(", ", vm.Trusts.Select(t => t.InstanceId).Distinct())}");
        }

        foreach (var grant in grants)
        {
            var vm = cloud.FirstOrDefault(v => v.WorkerId == grant.WorkerId);
            if (vm is null || !vm.TrustedInstances.Contains(grant.InstanceId)
                || requestsById.GetValueOrDefault(grant.LeaseId)?.InstanceId != grant.InstanceId)
            {
                violations.Add($"lease {grant.LeaseId} of {grant.InstanceId} got worker {grant.WorkerId}, which does "
                    + $"not trust that instance");
            }
        }

        // 3. Every VM created is deleted.
        if (expectAllDeleted)
        {
            violations.AddRange(cloud.Where(v => !v.Deleted).Select(v => $"VM {v.WorkerId} was never deleted"));
        }

        // 5. Nothing is lost: every request has its lease row and, once the run is quiet, no lease still holds a timer
        // and no worker record (which holds its own timers) is left.
        if (expectAllDeleted)
        {
            var rows = service.Leases.Select(l => l.LeaseId).ToHashSet();
            violations.AddRange(requestsById.Keys.Where(id => !rows.Contains(id))
                .Select(id => $"lease {id} of {requestsById[id].InstanceId}: no lease row (lost)"));
            violations.AddRange(service.Leases.Where(l => l.HoldsTimer)
                .Select(l => $"lease {l.LeaseId} ({l.State}) still holds its allocation timer"));
            violations.AddRange(service.WorkersLeft.Select(w => $"worker {w} left with its timers"));
        }

        // 6. Bad input never stops a consumer: every queue observed still has one.
        violations.AddRange(service.ConsumersByQueue.Where(q => q.Value == 0)
            .Select(q => $"queue {q.Key} has no consumer: its consumer stopped"));

        return violations;
    }
}
