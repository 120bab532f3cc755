using DynamicWorkers.Cloud;
using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>
/// Health before re-use as separate processes on the real broker and PostgreSQL: the lease service reads the simulated
/// cloud (rows in the shared database) before it leases an idle worker again.
/// </summary>
public sealed class HealthBeforeReuseTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";
    const string Instance = "instance-health";
    static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    LifecycleCluster _cluster = null!;

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "1",
        [$"Pools:{Pool}:MaxWorkers"] = "3",
        ["Pools:windows-2022:HotTarget"] = "0",
        // Every re-use is checked, so the test need not wait out an idle window.
        ["Lifecycle:HealthCheckAfterIdle"] = "00:00:00",
        ["Cloud:Provider"] = "Simulated",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.300",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.100",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.100",
    }).ToDictionary();

    public async Task InitializeAsync()
        => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString,
            ["LeaseSaga", "Provisioner", "Trust", "Reaper"]);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task A_worker_whose_vm_died_while_idle_is_deleted_as_unhealthy_and_the_next_lease_gets_another()
    {
        var first = await LeaseAsync();
        await _cluster.PublishWithRetryAsync(new LeaseReleased(first.LeaseId, Instance));
        await Eventually.True(
            async () => await _cluster.ScalarAsync($"SELECT count(*) FROM workers WHERE \"CorrelationId\" = "
                + $"'{first.WorkerId}' AND \"CurrentState\" = 'Idle'") == 1,
            Deadline, "the first worker idle", _cluster.Diagnostics);
        Assert.True(await SimulatedCloud().MarkDeadAsync(first.WorkerId, CancellationToken.None));

        var second = await LeaseAsync();

        Assert.NotEqual(first.WorkerId, second.WorkerId);
        Assert.False(second.Reused);
        await Eventually.True(
            async () => (await _cluster.CloudAsync()).Any(v => v.WorkerId == first.WorkerId && v.Deleted)
                        && await _cluster.ScalarAsync(
                            $"SELECT count(*) FROM workers WHERE \"CorrelationId\" = '{first.WorkerId}'") == 0,
            Deadline, "the dead worker's VM deleted and its saga finished", _cluster.Diagnostics);

        using var http = new HttpClient();
        var leaseSaga = _cluster.Services.Single(s => s.Project == "LeaseSaga");
        var metrics = "";
        await Eventually.True(
            async () => (metrics = await http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/metrics")))
                .Contains("dw_workers_reaped_total{otel_scope_name=\"DynamicWorkers\",reason=\"unhealthy\"} 1",
                    StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), "dw_workers_reaped_total{reason=\"unhealthy\"} 1", () => metrics);
    }

    async Task<LeaseGranted> LeaseAsync()
    {
        var request = new LeaseRequested(NewId.NextGuid(), Instance, LifecycleCluster.ThumbprintOf(Instance), Pool,
            "task", DateTimeOffset.UtcNow);
        _cluster.Ledger.Requested(request);
        await _cluster.PublishWithRetryAsync(request);
        await Eventually.True(() => _cluster.Ledger.OutcomesOf(request.LeaseId).Count > 0, Deadline,
            $"an outcome for lease {request.LeaseId}", _cluster.Diagnostics);
        return Assert.IsType<LeaseGranted>(_cluster.Ledger.OutcomesOf(request.LeaseId)[0]);
    }

    SimulatedCloud SimulatedCloud()
        => new(SimulatedCloudDbContext.CreateOptions(
            new DatabaseOptions { Provider = DatabaseProvider.Postgres, ConnectionString = database.ConnectionString }),
            Options.Create(new SimulatedCloudOptions()));
}
