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

    public IReadOnlyDictionary<Guid, DateTime> ReleasedAt { get { lock (_gate) { return new Dictionary<Guid, DateTime>(_released); } } }

    public IReadOnlyList<object> OutcomesOf(Guid leaseId) => Outcomes.Where(o => LeaseIdOf(o.Outcome) == leaseId).Select(o => o.Outcome).ToList();

    public static Guid LeaseIdOf(object outcome) => outcome switch
    {
        LeaseGranted g => g.LeaseId,
        LeaseRejected r => r.LeaseId,
        _ => Guid.Empty,
    };
}

/// <summary>A VM as the simulated cloud recorded it, and the instances it was ever told to trust.</summary>
public sealed record CloudRecord(Guid WorkerId, bool Deleted, IReadOnlyList<string> TrustedInstances);

/// <summary>
/// The design's invariants, checked over what a run observed. One checker for the lifecycle, chaos and
/// benchmark runs; it returns every violation it finds (none means the run was clean).
/// </summary>
public static class InvariantChecker
{
    public static IReadOnlyList<string> Check(LeaseLedger ledger, IReadOnlyList<CloudRecord> cloud, bool expectAllDeleted)
    {
        var violations = new List<string>();
        var requestsById = ledger.Requests.GroupBy(r => r.LeaseId).ToDictionary(g => g.Key, g => g.First());

        // 4. Every LeaseRequested gets exactly one outcome per LeaseId; duplicates get the same one.
        foreach (var (leaseId, request) in requestsById)
        {
            var outcomes = ledger.OutcomesOf(leaseId).Where(o => o is not LeaseRejected { Reason: LeaseRejectionReasons.LeaseIdConflict }).ToList();
            if (outcomes.Count == 0)
            {
                violations.Add($"lease {leaseId} of {request.InstanceId}: no outcome");
            }
            else if (outcomes.Distinct().Count() > 1)
            {
                violations.Add($"lease {leaseId}: {outcomes.Distinct().Count()} different outcomes: {string.Join(" | ", outcomes.Distinct())}");
            }
        }

        // One grant per lease (check 4 above reports a lease granted twice differently).
        var grants = ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseGranted>().DistinctBy(g => g.LeaseId).ToList();

        // 1. A worker serves at most one lease at a time: each grant on a worker comes after the previous lease on it was released.
        foreach (var worker in grants.GroupBy(g => g.WorkerId))
        {
            var ordered = worker.OrderBy(g => g.GrantedAt).ToList();
            for (var i = 1; i < ordered.Count; i++)
            {
                var previous = ordered[i - 1];
                if (!ledger.ReleasedAt.TryGetValue(previous.LeaseId, out var releasedAt) || releasedAt > ordered[i].GrantedAt.UtcDateTime)
                {
                    violations.Add($"worker {worker.Key}: lease {ordered[i].LeaseId} granted while lease {previous.LeaseId} still held it");
                }
            }
        }

        // 2. A worker trusts at most one instance over its whole life, and only that instance leases it.
        foreach (var vm in cloud.Where(v => v.TrustedInstances.Distinct().Count() > 1))
        {
            violations.Add($"VM {vm.WorkerId} trusted {string.Join(", ", vm.TrustedInstances.Distinct())}");
        }

        foreach (var grant in grants)
        {
            var vm = cloud.FirstOrDefault(v => v.WorkerId == grant.WorkerId);
            if (vm is null || !vm.TrustedInstances.Contains(grant.InstanceId) || requestsById.GetValueOrDefault(grant.LeaseId)?.InstanceId != grant.InstanceId)
            {
                violations.Add($"lease {grant.LeaseId} of {grant.InstanceId} got worker {grant.WorkerId}, which does not trust that instance");
            }
        }

        // 3. Every VM created is deleted.
        if (expectAllDeleted)
        {
            violations.AddRange(cloud.Where(v => !v.Deleted).Select(v => $"VM {v.WorkerId} was never deleted"));
        }

        return violations;
    }
}
