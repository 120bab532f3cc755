using System.Text.Json;
using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>
/// Pools added and removed at run time on the real broker and database, the services as processes: the LeaseSaga reads
/// its pools from an <c>appsettings.{environment}.json</c> beside its binary that the test rewrites, as an operator
/// edits a deployment's file (the host reloads it on change). An added pool is opened and filled to its hot target;
/// once removed it is no longer listed, new requests get <c>UnknownPool</c>, its hot workers are deleted at once and
/// its leased one when the lease ends, a late <c>SetPoolSize</c> is remembered without starting anything, and every
/// <c>_error</c> queue stays empty. Added again, it resumes at the size it remembers.
/// </summary>
public sealed class PoolConfigurationTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "extra";
    const int HotTarget = 2;
    const string Instance = "instance-a";

    static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    readonly string _environment = $"PoolChange{Guid.NewGuid():N}";
    LifecycleCluster _cluster = null!;

    /// <summary>The environment's settings file of the LeaseSaga build the cluster runs, reloaded by its host on
    /// change.</summary>
    string PoolsFile => Path.Combine(ServiceProcess.RepositoryRoot, "src", "LeaseSaga", "bin",
        ServiceProcess.BuildConfiguration, "net10.0", $"appsettings.{_environment}.json");

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        ["DOTNET_ENVIRONMENT"] = _environment,
        // The pools of the shipped appsettings.json stay configured (a file layered on top cannot remove them): kept
        // empty.
        ["Pools:ubuntu-22.04:HotTarget"] = "0",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.300",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.100",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.050",
    }).ToDictionary();

    public async Task InitializeAsync()
    {
        WritePoolsFile(withPool: false);
        _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString,
            ["LeaseSaga", "Provisioner", "Trust", "Reaper"]);
    }

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        File.Delete(PoolsFile);
    }

    [Fact]
    public async Task A_pool_added_to_the_configuration_is_filled_and_once_removed_drains_with_every_error_queue_empty()
    {
        var leaseSaga = _cluster.Services.Single(s => s.Project == "LeaseSaga");

        WritePoolsFile(withPool: true);

        await Eventually.True(async () => await WorkersAsync("Ready") == HotTarget, Deadline,
            "the added pool filled to its hot target", _cluster.Diagnostics);
        Assert.Contains(Pool, await ListedPoolsAsync(leaseSaga));
        var held = Assert.IsType<LeaseGranted>(await RequestAsync());
        await Eventually.True(async () => await WorkersAsync("Ready") == HotTarget, Deadline,
            "the pool refilled after the grant", _cluster.Diagnostics);

        WritePoolsFile(withPool: false);

        await Eventually.True(async () => await WorkersAsync() == 1 && await WorkersAsync("Leased") == 1, Deadline,
            "the removed pool's hot workers deleted, its leased one kept", _cluster.Diagnostics);
        Assert.DoesNotContain(Pool, await ListedPoolsAsync(leaseSaga));
        var refused = Assert.IsType<LeaseRejected>(await RequestAsync());
        Assert.Equal(LeaseRejectionReasons.UnknownPool, refused.Reason);
        await _cluster.Bus.Publish(new SetPoolSize(Pool, HotTarget + 1, 5));
        await Eventually.True(async () => await _cluster.ScalarAsync(
            $"SELECT count(*) FROM pools WHERE \"Name\" = '{Pool}' AND \"HotTarget\" = {HotTarget + 1}") == 1,
            Deadline, "the removed pool's new size remembered", _cluster.Diagnostics);
        var created = (await _cluster.CloudAsync()).Count;

        _cluster.Ledger.Released(held.LeaseId);
        await _cluster.Bus.Publish(new LeaseReleased(held.LeaseId, Instance));

        await Eventually.True(async () => await WorkersAsync() == 0, Deadline,
            "the leased worker deleted once its lease ended", _cluster.Diagnostics);
        var cloud = await _cluster.CloudAsync();
        Assert.Equal(created, cloud.Count);
        Assert.All(cloud, vm => Assert.True(vm.Deleted, $"VM of worker {vm.WorkerId} still exists"));
        var errors = await broker.ErrorQueuesAsync();
        Assert.True(errors.Values.All(messages => messages == 0),
            "messages in error queues: " + string.Join(", ", errors.Select(e => $"{e.Key} {e.Value}")));
        await using (var raw = await RawAmqp.ConnectAsync(broker.Name))
        {
            foreach (var queue in errors.Keys)
            {
                Assert.Empty(await raw.DrainAsync(queue));
            }
        }

        var violations =
            InvariantChecker.Check(_cluster.Ledger, cloud, await _cluster.ServiceAsync(), expectAllDeleted: true);
        Assert.True(violations.Count == 0, string.Join("\n", violations));

        WritePoolsFile(withPool: true);

        await Eventually.True(async () => await WorkersAsync("Ready") == HotTarget + 1, Deadline,
            "the pool added again at the size it remembers", _cluster.Diagnostics);
    }

    /// <summary>Written beside and renamed over the file, so the host never reloads a half-written one.</summary>
    void WritePoolsFile(bool withPool)
    {
        var pools = withPool
            ? new Dictionary<string, object> { [Pool] =
                new { HotTarget, MaxWorkers = 4, Image = "test-image", AllocationTimeout = "00:01:00" } }
            : [];
        var written = PoolsFile + ".new";
        File.WriteAllText(written, JsonSerializer.Serialize(new { Pools = pools }));
        File.Move(written, PoolsFile, overwrite: true);
    }

    Task<long> WorkersAsync(string? state = null)
        => _cluster.ScalarAsync($"SELECT count(*) FROM workers WHERE \"Pool\" = '{Pool}'"
            + (state is null ? "" : $" AND \"CurrentState\" = '{state}'"));

    async Task<object> RequestAsync()
    {
        var request = new LeaseRequested(NewId.NextGuid(), Instance, LifecycleCluster.ThumbprintOf(Instance), Pool,
            "task", DateTimeOffset.UtcNow);
        _cluster.Ledger.Requested(request);
        await _cluster.Bus.Publish(request);
        await Eventually.True(() => _cluster.Ledger.OutcomesOf(request.LeaseId).Count > 0, Deadline,
            "an outcome for the lease", _cluster.Diagnostics);
        return _cluster.Ledger.OutcomesOf(request.LeaseId)[0];
    }

    static async Task<IReadOnlyList<string>> ListedPoolsAsync(ServiceProcess leaseSaga)
    {
        using var pools = JsonDocument.Parse(await Http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/api/pools")));
        return pools.RootElement.EnumerateArray().Select(p => p.GetProperty("pool").GetString()!).ToList();
    }
}
