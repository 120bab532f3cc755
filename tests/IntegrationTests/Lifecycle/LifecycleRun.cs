using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>
/// The whole lifecycle across separate OS processes on the real broker and database: two LeaseSaga, two
/// Provisioner, one Trust and one Reaper (<see cref="LifecycleCluster"/>), with timeouts in seconds. Instances
/// publish <c>LeaseRequested</c> (every third twice) and <c>LeaseReleased</c> exactly as a product instance would.
/// Each instance holds several leases at once. A subclass picks the cloud (its settings, and how to read back every VM
/// it ever made and whom each trusted).
/// </summary>
public abstract class LifecycleRun(RabbitMqTestVirtualHost broker, PostgresTestDatabase database) : IAsyncLifetime
{
    protected const string Pool = "ubuntu-22.04";
    const int MaxWorkers = 30;

    LifecycleCluster _cluster = null!;

    protected LeaseLedger Ledger => _cluster.Ledger;

    protected PostgresTestDatabase Database => database;

    /// <summary>The <c>Cloud:*</c> settings of every service.</summary>
    protected abstract IReadOnlyDictionary<string, string?> CloudSettings { get; }

    /// <summary>Every VM the cloud ever created, deleted or not, with the instances it was told to trust.</summary>
    protected abstract Task<IReadOnlyList<CloudRecord>> CloudAsync();

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "5",
        [$"Pools:{Pool}:MaxWorkers"] = $"{MaxWorkers}",
        [$"Pools:{Pool}:AllocationTimeout"] = "00:02:00",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Lifecycle:IdleTimeout"] = "00:00:05",
        ["Lifecycle:MaxWorkerAge"] = "01:00:00",
        ["Lifecycle:MaxLeaseDuration"] = "00:10:00",
        ["Lifecycle:ProvisioningTimeout"] = "00:01:00",
        ["Lifecycle:TrustTimeout"] = "00:00:30",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
    }).Concat(CloudSettings).ToDictionary();

    public async Task InitializeAsync()
        => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    /// <summary>
    /// Plays the instances to the end, checks that every lease was granted and that re-use happened, drains the
    /// pool, waits until the cloud holds no VM and no worker is left, then runs the <see cref="InvariantChecker"/>.
    /// </summary>
    protected async Task PlayAndCheckAsync(int instances, int leasesPerInstance)
    {
        // Each instance holds up to three leases at once (so one worker granted to two of them could be seen), each
        // lane leasing one after another, every third request published twice, each released after use.
        var lanes = Math.Min(3, leasesPerInstance);
        await Task.WhenAll(Enumerable.Range(0, instances * lanes).Select(l => _cluster.PlayInstanceAsync(
            $"instance-{l / lanes:00}", Pool, (leasesPerInstance + lanes - 1 - l % lanes) / lanes, n => n % 3 == 0,
            TimeSpan.FromSeconds(120), seed: l)));

        // Re-use in the play above depends on timing (a release races the next request); here it is certain: once the
        // first lease's worker is idle and nothing waits, the instance's next lease must get that worker again.
        const string again = "instance-again";
        await _cluster.PlayInstanceAsync(again, Pool, 1, _ => false, TimeSpan.FromSeconds(120),
            seed: instances * lanes);
        await Eventually.True(
            async () => await database.ScalarAsync(
                $"SELECT count(*) FROM workers WHERE \"TrustedInstanceId\" = '{again}' AND \"CurrentState\" = "
                    + $"'Idle'") == 1,
            TimeSpan.FromSeconds(30), $"{again}'s worker idle after its release", _cluster.Diagnostics);
        await _cluster.PlayInstanceAsync(again, Pool, 1, _ => false, TimeSpan.FromSeconds(120),
            seed: instances * lanes + 1);

        var grants = Ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseGranted>().DistinctBy(g => g.LeaseId).ToList();
        var rejections = Ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseRejected>().ToList();
        Assert.True(grants.Count == instances * leasesPerInstance + 2,
            $"{grants.Count} grants; rejections: {string.Join("; ", rejections)}\n{_cluster.Diagnostics()}");
        Assert.Contains(grants, g => g.Reused && g.InstanceId == again);
        Assert.Contains(grants, g => !g.Reused);

        // Drain the hot pool too, then every VM the cloud created must be deleted.
        await _cluster.Bus.Publish(new SetPoolSize(Pool, 0, MaxWorkers));
        await Eventually.True(
            async () => (await CloudAsync()).All(v => v.Deleted)
                && await database.ScalarAsync("SELECT count(*) FROM workers") == 0,
            TimeSpan.FromSeconds(120),
            "every VM deleted and every worker gone after the idle timeout",
            _cluster.Diagnostics);

        var violations = InvariantChecker.Check(Ledger, await CloudAsync(),
            await ServiceRecords.ReadAsync(database.ConnectionString), expectAllDeleted: true);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    /// <summary>The certificate thumbprint each instance leases with (a product instance has one of its own).</summary>
    protected static string ThumbprintOf(string instance) => LifecycleCluster.ThumbprintOf(instance);
}
