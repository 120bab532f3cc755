using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>
/// The whole lifecycle across separate OS processes on the real broker and database: two LeaseSaga, two
/// Provisioner, one Trust and one Reaper, with the simulated cloud and timeouts in seconds. Instances
/// publish <c>LeaseRequested</c> (some twice) and <c>LeaseReleased</c> exactly as a product instance would.
/// </summary>
public sealed class LeaseLifecycleTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";
    const int Instances = 20;
    const int LeasesPerInstance = 10;

    LifecycleCluster _cluster = null!;

    IReadOnlyDictionary<string, string?> Settings => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "5",
        [$"Pools:{Pool}:MaxWorkers"] = "30",
        [$"Pools:{Pool}:AllocationTimeout"] = "00:02:00",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Lifecycle:IdleTimeout"] = "00:00:05",
        ["Lifecycle:MaxWorkerAge"] = "01:00:00",
        ["Lifecycle:MaxLeaseDuration"] = "00:10:00",
        ["Lifecycle:ProvisioningTimeout"] = "00:01:00",
        ["Lifecycle:TrustTimeout"] = "00:00:30",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:01",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.200",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.100",
    }).ToDictionary();

    public async Task InitializeAsync() => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Two_hundred_leases_from_twenty_instances_keep_every_invariant_and_leave_no_vm_behind()
    {
        var bus = _cluster.Bus;
        var ledger = _cluster.Ledger;

        // Ten leases one after another per instance, every third request published twice, each released after use.
        await Task.WhenAll(Enumerable.Range(0, Instances).Select(i => _cluster.PlayInstanceAsync(
            $"instance-{i:00}", Pool, LeasesPerInstance, n => n % 3 == 0, TimeSpan.FromSeconds(120), seed: i)));

        var grants = ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseGranted>().DistinctBy(g => g.LeaseId).ToList();
        var rejections = ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseRejected>().ToList();
        Assert.True(grants.Count == Instances * LeasesPerInstance, $"{grants.Count} grants; rejections: {string.Join("; ", rejections)}\n{_cluster.Diagnostics()}");
        Assert.Contains(grants, g => g.Reused);
        Assert.Contains(grants, g => !g.Reused);

        // Drain the hot pool too, then every VM the simulator created must be deleted.
        await bus.Publish(new SetPoolSize(Pool, 0, 30));
        await Eventually.True(
            async () => (await _cluster.CloudAsync()).All(v => v.Deleted) && await _cluster.ScalarAsync("SELECT count(*) FROM workers") == 0,
            TimeSpan.FromSeconds(120),
            "every VM deleted and every worker gone after the idle timeout",
            _cluster.Diagnostics);

        var violations = InvariantChecker.Check(ledger, await _cluster.CloudAsync(), expectAllDeleted: true);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }
}
