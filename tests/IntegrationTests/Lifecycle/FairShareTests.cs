using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Xunit.Abstractions;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>
/// Fair share per pool (invariant 8) on the real broker and database, the services as processes: instance A floods a
/// small pool at ten times its <c>MaxLeasesPerInstance</c>, all at once, and holds what it gets; A gets exactly its cap
/// and <c>InstanceLimit</c> for the rest, and B's lease is granted within the pool's normal time. Then A's workers go
/// idle with the pool at <c>MaxWorkers</c>, and B's next lease still comes within that time: A's worker idle longest is
/// retired to make room. Normal time is what a lease for a new worker takes by the configuration (provisioning plus
/// trust) and a margin for the messages between; without fair share B would wait behind A's line, or for A's idle
/// timeout, until its allocation timeout.
/// </summary>
public sealed class FairShareTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database,
    ITestOutputHelper output)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";
    const int MaxWorkers = 3;
    const int MaxLeasesPerInstance = 2;
    const int Flood = 10 * MaxLeasesPerInstance;

    static readonly TimeSpan ProvisionDelay = TimeSpan.FromMilliseconds(500);
    static readonly TimeSpan TrustDelay = TimeSpan.FromMilliseconds(100);

    /// <summary>Messages and database work between the request, the cloud's answers and the grant, on a busy
    /// machine.</summary>
    static readonly TimeSpan Margin = TimeSpan.FromSeconds(4);

    /// <summary>The pool's normal time for a lease that needs a new worker.</summary>
    static readonly TimeSpan NormalGrantTime = ProvisionDelay + TrustDelay + Margin;

    /// <summary>Far beyond the normal time, so a lease kept from its share is seen waiting, not turned away.</summary>
    static readonly TimeSpan AllocationTimeout = TimeSpan.FromSeconds(60);

    LifecycleCluster _cluster = null!;

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "1",
        [$"Pools:{Pool}:MaxWorkers"] = $"{MaxWorkers}",
        [$"Pools:{Pool}:AllocationTimeout"] = AllocationTimeout.ToString(),
        [$"Pools:{Pool}:MaxLeasesPerInstance"] = $"{MaxLeasesPerInstance}",
        [$"Pools:{Pool}:MaxWaitingPerInstance"] = "1",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Lifecycle:IdleTimeout"] = "00:10:00",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        ["Cloud:Simulated:ProvisionDelay"] = ProvisionDelay.ToString(),
        ["Cloud:Simulated:TrustDelay"] = TrustDelay.ToString(),
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.050",
    }).ToDictionary();

    public async Task InitializeAsync()
        => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString,
            ["LeaseSaga", "Provisioner", "Trust", "Reaper"]);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task A_flood_by_one_instance_at_ten_times_its_cap_leaves_another_instance_s_grants_within_the_pool_s_normal_time()
    {
        var ledger = _cluster.Ledger;
        // Warm-up: A leases once and releases, so the services have run each step once (as a running deployment has).
        var warmUp = Request("instance-a", "warm-up");
        await _cluster.Bus.Publish(warmUp);
        await Eventually.True(() => ledger.OutcomesOf(warmUp.LeaseId).FirstOrDefault() is LeaseGranted,
            TimeSpan.FromSeconds(30), "the warm-up grant", _cluster.Diagnostics);
        ledger.Released(warmUp.LeaseId);
        await _cluster.Bus.Publish(new LeaseReleased(warmUp.LeaseId, "instance-a"));
        await Eventually.True(async () => await _cluster.ScalarAsync(
            "SELECT count(*) FROM workers WHERE \"CurrentState\" IN ('Ready', 'Idle')") == 2,
            TimeSpan.FromSeconds(30), "A's idle worker and a hot one", _cluster.Diagnostics);

        // A's flood, published all at once: the LeaseSaga decides many of them side by side.
        var flood = Enumerable.Range(0, Flood).Select(i => Request("instance-a", $"flood-{i}")).ToList();
        await Task.WhenAll(flood.Select(r => _cluster.Bus.Publish(r)));
        var first = await GrantWithinNormalTimeAsync("instance-b", "while A floods");
        await Eventually.True(() => flood.All(r => ledger.OutcomesOf(r.LeaseId).Count > 0), AllocationTimeout,
            "an answer to each of A's requests", _cluster.Diagnostics);
        var answers = flood.Select(r => ledger.OutcomesOf(r.LeaseId)[0]).ToList();
        var held = answers.OfType<LeaseGranted>().ToList();
        Assert.True(held.Count == MaxLeasesPerInstance, Describe(answers));
        Assert.True(answers.OfType<LeaseRejected>().All(r => r.Reason == LeaseRejectionReasons.InstanceLimit),
            Describe(answers));

        // A's tasks end: the pool is at MaxWorkers, two of its workers idle for A. B's next lease gets room all the
        // same.
        foreach (var grant in held)
        {
            ledger.Released(grant.LeaseId);
            await _cluster.Bus.Publish(new LeaseReleased(grant.LeaseId, grant.InstanceId));
        }

        await Eventually.True(async () => await _cluster.ScalarAsync(
            "SELECT count(*) FROM workers WHERE \"CurrentState\" = 'Idle'") == MaxLeasesPerInstance,
            TimeSpan.FromSeconds(30), "A's workers idle", _cluster.Diagnostics);
        var idle = await _cluster.RowsAsync("SELECT \"CorrelationId\"::text FROM workers WHERE \"CurrentState\" = "
            + "'Idle' ORDER BY \"LastLeaseEndedAt\"");
        var second = await GrantWithinNormalTimeAsync("instance-b", "with A's workers idle at MaxWorkers");

        Assert.DoesNotContain(second.WorkerId, held.Select(g => g.WorkerId));
        await Eventually.True(async () => await _cluster.ScalarAsync(
            $"SELECT count(*) FROM workers WHERE \"CorrelationId\" = '{idle[0]}'") == 0,
            TimeSpan.FromSeconds(30), "A's worker idle longest retired and deleted", _cluster.Diagnostics);
        Assert.Equal(1, await _cluster.ScalarAsync(
            $"SELECT count(*) FROM workers WHERE \"CorrelationId\" = '{idle[1]}' AND \"CurrentState\" = 'Idle'"));
        Assert.NotEqual(first.WorkerId, second.WorkerId);
        var cloud = await _cluster.CloudAsync();
        var violations = InvariantChecker.Check(ledger, cloud, await _cluster.ServiceAsync(), expectAllDeleted: false);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    LeaseRequested Request(string instance, string task)
    {
        var request = new LeaseRequested(NewId.NextGuid(), instance, LifecycleCluster.ThumbprintOf(instance), Pool,
            task, DateTimeOffset.UtcNow);
        _cluster.Ledger.Requested(request);
        return request;
    }

    async Task<LeaseGranted> GrantWithinNormalTimeAsync(string instance, string when)
    {
        var request = Request(instance, when);
        var sentAt = DateTime.UtcNow;
        await _cluster.Bus.Publish(request);
        // Waiting longer would only tell how late: a lease kept from its share is answered at the allocation timeout.
        await Eventually.True(() => _cluster.Ledger.OutcomesOf(request.LeaseId).Count > 0, NormalGrantTime,
            $"{instance}'s outcome {when}, within the pool's normal time", _cluster.Diagnostics);
        var (outcome, at) = _cluster.Ledger.Outcomes.First(o => LeaseLedger.LeaseIdOf(o.Outcome) == request.LeaseId);
        var waited = at - sentAt;
        output.WriteLine($"{instance} {when}: {outcome.GetType().Name} after {waited.TotalSeconds:0.000} s (normal "
            + $"time {NormalGrantTime.TotalSeconds:0.0} s)");
        var grant = outcome as LeaseGranted
            ?? throw new Xunit.Sdk.XunitException($"{instance} {when}: {outcome}\n{_cluster.Diagnostics()}");
        Assert.True(waited <= NormalGrantTime, $"{instance} {when}: granted after {waited.TotalSeconds:0.000} s, "
            + $"beyond the pool's normal {NormalGrantTime.TotalSeconds:0.0} s");
        return grant;
    }

    static string Describe(IEnumerable<object> answers)
        => "A's answers: " + string.Join(", ", answers.GroupBy(a => a is LeaseRejected r ? r.Reason : a.GetType().Name)
            .Select(g => $"{g.Count()} {g.Key}"));
}
