using System.Text.RegularExpressions;
using DynamicWorkers.Cloud.Azure;
using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Cloud;

/// <summary>The Reaper's orphan sweep as a process with <c>Cloud:Provider = Azure</c>, against the ARM emulator.</summary>
public sealed partial class AzureReaperSweepTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database, ArmEmulatorFixture emulator)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IClassFixture<ArmEmulatorFixture>, IAsyncLifetime
{
    readonly List<ServiceProcess> _services = [];

    public async Task InitializeAsync()
    {
        var settings = broker.Settings.Concat(database.Settings).Concat(emulator.Settings).Concat(new Dictionary<string, string?>
        {
            ["Pools:ubuntu-22.04:HotTarget"] = "0",
            ["Pools:windows-2022:HotTarget"] = "0",
            ["Reaper:SweepInterval"] = "00:00:01",
            ["Reaper:OrphanGrace"] = "00:00:02",
        }).ToDictionary();
        foreach (var project in new[] { "LeaseSaga", "Reaper" })
        {
            var service = ServiceProcess.Start(project, settings);
            _services.Add(service);
            await service.WaitUntilStartedAsync(TimeSpan.FromSeconds(90));
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var service in _services)
        {
            await service.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_tagged_vm_with_no_live_worker_is_deleted_and_one_still_provisioning_or_of_another_deployment_is_spared()
    {
        var orphan = Seed("dynamic-workers", "Succeeded");
        var provisioning = Seed("dynamic-workers", "Creating");
        var foreign = Seed("another-deployment", "Succeeded");

        await Eventually.True(
            () => emulator.Server.State.Vms.All(v => v.WorkerId != orphan),
            TimeSpan.FromSeconds(60),
            "the orphan VM to be deleted",
            () => string.Join("\n----\n", _services.Select(s => s.Output)));

        Assert.Contains(emulator.Server.State.Vms, v => v.WorkerId == provisioning);
        Assert.Contains(emulator.Server.State.Vms, v => v.WorkerId == foreign);
        Assert.Contains("Deleting orphan VM of worker " + orphan, _services[1].Output);
        Assert.Single(emulator.Server.Requests, r => r.Method == "DELETE");
        using var http = new HttpClient();
        await Eventually.True(
            async () => OrphanCount().IsMatch(await http.GetStringAsync(new Uri(_services[1].HttpAddress, "/metrics"))),
            TimeSpan.FromSeconds(15),
            "dw_workers_reaped_total{reason=\"orphan\"} 1 on the reaper's /metrics");
    }

    [GeneratedRegex(@"(?m)^dw_workers_reaped_total\{[^}]*reason=""orphan""[^}]*\} 1(\s|$)")]
    private static partial Regex OrphanCount();

    Guid Seed(string managedBy, string state)
    {
        var workerId = Guid.NewGuid();
        emulator.Server.State.Seed(
            ArmEmulatorFixture.SubscriptionId,
            ArmEmulatorFixture.ResourceGroup,
            AzureWorkerCloud.VmName(workerId),
            new Dictionary<string, string>
            {
                [AzureWorkerCloud.ManagedByTag] = managedBy,
                [AzureWorkerCloud.WorkerIdTag] = workerId.ToString(),
                [AzureWorkerCloud.PoolTag] = "ubuntu-22.04",
                [AzureWorkerCloud.CreatedAtTag] = DateTimeOffset.UtcNow.AddHours(-1).ToString("O"),
            },
            state);
        return workerId;
    }
}
