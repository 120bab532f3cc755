using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using MassTransit.Scheduling;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>
/// Issue 29, item 3: every message the lease and worker machines (and the allocator and pool keeper acting for them)
/// send or publish, and every answer of the cloud to them, is lost once in each lifecycle that sends it. Then only
/// what runs in production repairs it: the timers, the Reaper's sweep (<see cref="SweepOverdueTimers"/>, published
/// between steps as the Reaper does), and the instance as the client library behaves (it re-sends an unanswered
/// request with the same <c>LeaseId</c>; it releases once). Each case ends with the drop verified, every invariant the
/// bed can see held, and nothing leaked once the workers' deadlines passed.
/// </summary>
public sealed class DropRecoveryTests
{
    const string Instance = "instance-1";
    static readonly TimeSpan SweepGrace = TimeSpan.FromMinutes(1);

    static readonly Dictionary<string, Func<ConsumeContext, bool>> Targets = new()
    {
        [nameof(ProvisionWorker)] = DropPlan.Of<ProvisionWorker>(),
        [nameof(WorkerProvisioned)] = DropPlan.Of<WorkerProvisioned>(),
        [nameof(TrustWorker)] = DropPlan.Of<TrustWorker>(),
        [nameof(WorkerTrusted)] = DropPlan.Of<WorkerTrusted>(),
        [nameof(WorkerTrustFailed)] = DropPlan.Of<WorkerTrustFailed>(),
        [nameof(WorkerLeased)] = DropPlan.Of<WorkerLeased>(),
        [nameof(RevokeLease)] = DropPlan.Of<RevokeLease>(),
        [nameof(LeaseQueued)] = DropPlan.Of<LeaseQueued>(),
        [nameof(CheckWorkerDeadlines)] = DropPlan.Of<CheckWorkerDeadlines>(),
        [nameof(ReconcilePool)] = DropPlan.Of<ReconcilePool>(),
        [nameof(DeprovisionWorker)] = DropPlan.Of<DeprovisionWorker>(),
        [nameof(WorkerDeprovisioned)] = DropPlan.Of<WorkerDeprovisioned>(),
        [nameof(WorkerTimerDue)] = DropPlan.Of<WorkerTimerDue>(),
        ["WorkerTimerDue (schedule)"] = DropPlan.ScheduleOf<WorkerTimerDue>(),
        ["LeaseAllocationTimedOut (schedule)"] = DropPlan.ScheduleOf<LeaseAllocationTimedOut>(),
        [nameof(CancelScheduledMessage)] = DropPlan.Of<CancelScheduledMessage>(),
        [nameof(LeaseGranted)] = DropPlan.Of<LeaseGranted>(),
        ["LeaseGranted (re-use)"] = c => c.TryGetMessage<LeaseGranted>(out var g) && g.Message.Reused,
        [nameof(LeaseRejected)] = DropPlan.Of<LeaseRejected>(),
        [nameof(LeaseRevoked)] = DropPlan.Of<LeaseRevoked>(),
    };

    /// <summary>Each lifecycle with the messages it sends (the first of each is the one lost).</summary>
    static readonly Dictionary<Scenario, string[]> Matrix = new()
    {
        [Scenario.Hot] =
        [
            nameof(ProvisionWorker), nameof(WorkerProvisioned), nameof(TrustWorker), nameof(WorkerTrusted),
            nameof(LeaseGranted), nameof(ReconcilePool), nameof(DeprovisionWorker),
            nameof(WorkerDeprovisioned), nameof(WorkerTimerDue), "WorkerTimerDue (schedule)",
        ],
        [Scenario.Cold] =
        [
            nameof(ProvisionWorker), nameof(WorkerProvisioned), nameof(TrustWorker), nameof(WorkerTrusted),
            nameof(LeaseGranted), nameof(ReconcilePool), "LeaseAllocationTimedOut (schedule)",
            nameof(CancelScheduledMessage),
            "WorkerTimerDue (schedule)",
        ],
        [Scenario.Reuse] = ["LeaseGranted (re-use)"],
        [Scenario.Handover] = [nameof(WorkerLeased), "LeaseGranted (re-use)"],
        [Scenario.Revoke] = [nameof(RevokeLease), nameof(LeaseRevoked), nameof(DeprovisionWorker),
            nameof(WorkerDeprovisioned), nameof(WorkerTimerDue)],
        [Scenario.TrustFails] = [nameof(WorkerTrustFailed), nameof(LeaseQueued), nameof(DeprovisionWorker),
            nameof(WorkerDeprovisioned), nameof(TrustWorker)],
        [Scenario.Rejected] = [nameof(LeaseRejected)],
        [Scenario.OldHot] = [nameof(WorkerTimerDue), "WorkerTimerDue (schedule)"],
        [Scenario.HotAskedOnce] = [nameof(TrustWorker), nameof(WorkerTrusted)],
        [Scenario.ColdAskedOnce] = [nameof(ProvisionWorker), nameof(WorkerProvisioned), nameof(WorkerTrusted)],
    };

    public enum Scenario
    {
        /// <summary>A hot worker is granted and released, then reaped idle.</summary>
        Hot,

        /// <summary>An empty pool provisions a worker for the waiting lease.</summary>
        Cold,

        /// <summary>A second lease of the instance re-uses its idle worker.</summary>
        Reuse,

        /// <summary>At <c>MaxWorkers</c>, a released worker goes straight to the instance's waiting lease.</summary>
        Handover,

        /// <summary>A lease never released is revoked at its max duration by its worker, which is reaped.</summary>
        Revoke,

        /// <summary>The hot worker's trust fails: the lease goes back in line and a new worker serves it.</summary>
        TrustFails,

        /// <summary>An unknown pool: rejected at once.</summary>
        Rejected,

        /// <summary>
        /// As <see cref="Hot"/>, half an hour later: its timer stands at its max age, and the lease and the release
        /// have to bring it forward to the lease's expiry and then the idle timeout.
        /// </summary>
        OldHot,

        /// <summary>As <see cref="Hot"/>, by an instance that publishes its request once and never asks
        /// again.</summary>
        HotAskedOnce,

        /// <summary>As <see cref="Cold"/>, by an instance that publishes its request once and never asks
        /// again.</summary>
        ColdAskedOnce,
    }

    public static TheoryData<Scenario, string> Cases()
    {
        var cases = new TheoryData<Scenario, string>();
        foreach (var (scenario, messages) in Matrix)
        {
            foreach (var message in messages)
            {
                cases.Add(scenario, message);
            }
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task A_lost_message_is_recovered_and_every_invariant_holds(Scenario scenario, string dropped)
    {
        var (hotTarget, maxWorkers) = scenario switch
        {
            Scenario.Cold or Scenario.ColdAskedOnce or Scenario.Rejected => (0, 2),
            Scenario.Handover or Scenario.TrustFails => (1, 1),
            _ => (1, 3),
        };
        await using var bed = await StartAsync(hotTarget, maxWorkers, drop: (dropped, Targets[dropped]),
            cloud: c => c.FailTrustTimes = scenario == Scenario.TrustFails ? 1 : 0);
        var client = new Client(bed, resends: scenario is not (Scenario.HotAskedOnce or Scenario.ColdAskedOnce));

        await RunAsync(scenario, bed, client);
        await DrainAsync(bed, client, maxWorkers);

        Assert.True(bed.Drops.Dropped == 1, $"the {dropped} was never dropped in {scenario}: the case proves nothing");
        await AssertInvariantsAsync(bed, client);
        if (scenario == Scenario.Revoke)
        {
            // Its max duration passed long before the instance released: the service revoked it, and said so.
            var lease = (await bed.LeaseAsync(client.Leases.Single()))!;
            Assert.Equal(LeaseStates.Revoked, lease.CurrentState);
            Assert.Equal(LeaseRevocationReasons.MaxLeaseDuration,
                Assert.Single(bed.Client.Revocations(lease.CorrelationId).Distinct()).Reason);
        }
    }

    static async Task RunAsync(Scenario scenario, LifecycleBed bed, Client client)
    {
        await bed.SettledAsync();
        switch (scenario)
        {
            case Scenario.OldHot:
                await bed.UntilWorkersAsync(WorkerStates.Ready, 1);
                await bed.AdvanceAsync(TimeSpan.FromMinutes(31));
                await client.LeaseAndReleaseAsync();
                break;
            case Scenario.Hot or Scenario.Cold or Scenario.TrustFails or Scenario.HotAskedOnce
                or Scenario.ColdAskedOnce:
                await client.LeaseAndReleaseAsync();
                break;
            case Scenario.Reuse:
                await client.LeaseAndReleaseAsync();
                await client.LeaseAndReleaseAsync();
                break;
            case Scenario.Handover:
            {
                var first = await client.LeaseAsync(NewId.NextGuid());
                var second = client.Request(NewId.NextGuid());
                await bed.Bus.Publish(second);
                await bed.UntilLeaseAsync(second.LeaseId, LeaseStates.WaitingForWorker);
                await client.ReleaseAsync(first);
                await client.ReleaseAsync(await client.AwaitAsync(second));
                break;
            }

            case Scenario.Revoke:
            {
                var granted = Assert.IsType<LeaseGranted>(await client.LeaseAsync(NewId.NextGuid()));
                await bed.AdvanceAsync(TimeSpan.FromHours(24) + TimeSpan.FromMinutes(1));
                for (var step = 0; step < 3 && bed.Client.Revocations(granted.LeaseId).Count == 0; step++)
                {
                    await bed.AdvanceAsync(TimeSpan.FromMinutes(2));
                    await SweepAsync(bed);
                }

                // Never told: its task on the vanished worker failed, and the instance releases as it always does.
                if (bed.Client.Revocations(granted.LeaseId).Count == 0)
                {
                    await client.ReleaseAsync(granted);
                }

                break;
            }

            case Scenario.Rejected:
                Assert.IsType<LeaseRejected>(await client.LeaseAsync(NewId.NextGuid(), pool: "no-such-pool"));
                break;
        }
    }

    /// <summary>The hot pool set to nothing, then the clock moves on in half hours, with a sweep each, until every
    /// worker is gone.</summary>
    static async Task DrainAsync(LifecycleBed bed, Client client, int maxWorkers)
    {
        await bed.Bus.Publish(new SetPoolSize(Pool, 0, maxWorkers));
        for (var step = 0; step < 10; step++)
        {
            await bed.AdvanceAsync(TimeSpan.FromMinutes(30));
            await SweepAsync(bed);
            await bed.SettledAsync();
            if ((await bed.WorkersAsync()).Count == 0
                && bed.Cloud.Provisioned.All(p => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == p.WorkerId)))
            {
                return;
            }
        }
    }

    static async Task AssertInvariantsAsync(LifecycleBed bed, Client client)
    {
        Assert.Empty(bed.Harness.Published.Select<Fault>());
        var leases = new List<LeaseState>();
        foreach (var leaseId in client.Leases)
        {
            // 4: exactly one outcome, re-sent only as the same value, and the instance received it.
            var outcome = Assert.Single(bed.Outcomes(leaseId).Distinct());
            Assert.Equal([outcome], bed.Client.Outcomes(leaseId).Distinct());
            var lease = (await bed.LeaseAsync(leaseId))!;
            leases.Add(lease);
            // No lease stuck: each one ended, and a revoked one's instance was told, always with the same reason.
            Assert.Contains(lease.CurrentState,
                new[] { LeaseStates.Released, LeaseStates.Revoked, LeaseStates.Rejected });
            if (lease.CurrentState == LeaseStates.Revoked)
            {
                Assert.Single(bed.Client.Revocations(leaseId).Distinct());
            }
        }

        // 1: a worker serves one lease at a time.
        foreach (var served in leases.Where(l => l.GrantedAt is not null).GroupBy(l => l.WorkerId))
        {
            var ordered = served.OrderBy(l => l.GrantedAt).ToList();
            for (var i = 1; i < ordered.Count; i++)
            {
                Assert.True(ordered[i - 1].EndedAt <= ordered[i].GrantedAt, $"worker {served.Key} granted to "
                    + $"{ordered[i].CorrelationId} while serving {ordered[i - 1].CorrelationId}");
            }
        }

        // 2: a worker trusts one instance.
        Assert.All(bed.Cloud.Trusted.GroupBy(t => t.WorkerId),
            t => Assert.Single(t.Select(x => x.InstanceId).Distinct()));

        // 3: every VM created is deleted, and no worker is left.
        Assert.Empty(await bed.WorkersAsync());
        Assert.All(bed.Cloud.Provisioned, p => Assert.Contains(bed.Cloud.Deprovisioned, d => d.WorkerId == p.WorkerId));
    }

    static async Task SweepAsync(LifecycleBed bed)
    {
        await bed.Bus.Publish(new SweepOverdueTimers(SweepGrace));
        await bed.SettledAsync();
    }

    /// <summary>One instance as the client library behaves (<paramref name="resends"/>), or one that asks only
    /// once.</summary>
    sealed class Client(LifecycleBed bed, bool resends)
    {
        public List<Guid> Leases { get; } = [];

        public LeaseRequested Request(Guid leaseId, string pool = Pool)
        {
            Leases.Add(leaseId);
            return new LeaseRequested(leaseId, Instance, ThumbprintA, pool, "task-1", bed.Clock.GetUtcNow());
        }

        public async Task<object> LeaseAsync(Guid leaseId, string pool = Pool)
        {
            var request = Request(leaseId, pool);
            await bed.Bus.Publish(request);
            return await AwaitAsync(request);
        }

        /// <summary>
        /// The answer; while none arrived, the same request again a minute later (the sweep runs in between). The bed's
        /// allocation timeout is 5 minutes, so a lease still unanswered after 12 is a lease that is never answered.
        /// </summary>
        public async Task<object> AwaitAsync(LeaseRequested request)
        {
            for (var attempt = 0; attempt < 12; attempt++)
            {
                await bed.SettledAsync();
                if (bed.Client.Outcomes(request.LeaseId) is [var answer, ..])
                {
                    return answer;
                }

                await bed.AdvanceAsync(TimeSpan.FromMinutes(1));
                await SweepAsync(bed);
                if (resends)
                {
                    await bed.Bus.Publish(request);
                }
            }

            throw new TimeoutException($"lease {request.LeaseId} was never answered");
        }

        /// <summary>Released once, as the client library does; nothing for a rejected lease.</summary>
        public async Task ReleaseAsync(object outcome)
        {
            if (outcome is LeaseGranted granted)
            {
                await bed.ReleaseAsync(granted.LeaseId, Instance);
                await bed.SettledAsync();
            }
        }

        public async Task LeaseAndReleaseAsync() => await ReleaseAsync(await LeaseAsync(NewId.NextGuid()));
    }
}
