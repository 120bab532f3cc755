using System.Text.RegularExpressions;
using DynamicWorkers.Cloud.Azure;
using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Cloud;

/// <summary>The Reaper's orphan sweep as a process with <c>Cloud:Provider = Azure</c>, against the ARM
/// emulator.</summary>
public sealed partial class AzureReaperSweepTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database,
    ArmEmulatorFixture emulator)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IClassFixture<ArmEmulatorFixture>,
        IAsyncLifetime
{
    readonly List<ServiceProcess> _services = [];

    public async Task InitializeAsync()
    {
        var settings =
            broker.Settings.Concat(database.Settings).Concat(emulator.Settings).Concat(new Dictionary<string, string?>
        {
            // One worker that stays Provisioning (no Provisioner runs): the live worker record of a VM to spare.
            ["Pools:ubuntu-22.04:HotTarget"] = "0",
            ["Pools:windows-2022:HotTarget"] = "1",
            ["Reaper:SweepInterval"] = "00:00:01",
            ["Reaper:OrphanGrace"] = "00:10:00",
            // A failed delete fails at once: one DELETE per sweep, so the test can tell the sweeps apart.
            ["Cloud:Azure:MaxRetries"] = "0",
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
    public async Task A_tagged_vm_with_no_live_worker_is_deleted_even_when_another_delete_fails_and_vms_provisioning_young_live_or_foreign_are_spared()
    {
        string? liveWorker = null;
        await Eventually.True(
            async () => (liveWorker = (await database.RowsAsync("SELECT \"CorrelationId\"::text FROM workers"))
                .SingleOrDefault()) is not null,
            TimeSpan.FromSeconds(60),
            "the pool's worker record",
            () => _services[0].Output);

        // Seeded in this order, and the emulator lists VMs in creation order: the failing delete comes first.
        var failing = Seed("dynamic-workers", "Succeeded");
        emulator.Server.Faults.Inject("DELETE", AzureWorkerCloud.VmName(failing), 500, count: 10_000);
        var orphan = Seed("dynamic-workers", "Succeeded");
        var provisioning = Seed("dynamic-workers", "Creating");
        var foreign = Seed("another-deployment", "Succeeded");
        var live = Seed("dynamic-workers", "Succeeded", Guid.Parse(liveWorker!));
        var young = Seed("dynamic-workers", "Succeeded", createdAt: DateTimeOffset.UtcNow);

        await Eventually.True(
            () => emulator.Server.State.Vms.All(v => v.WorkerId != orphan),
            TimeSpan.FromSeconds(60),
            "the orphan VM to be deleted",
            () => string.Join("\n----\n", _services.Select(s => s.Output)));
        // The failing VM's DELETE of a later sweep: the sweep that deleted the orphan has looked at every VM.
        var orphanDeleted = emulator.Server.Requests.Last(r => r.Method == "DELETE"
            && r.Path.EndsWith(AzureWorkerCloud.VmName(orphan), StringComparison.OrdinalIgnoreCase)).At;
        await Eventually.True(
            () => emulator.Server.Requests.Any(r => r.Method == "DELETE" && r.Path.EndsWith(
                AzureWorkerCloud.VmName(failing), StringComparison.OrdinalIgnoreCase) && r.ReceivedAt > orphanDeleted),
            TimeSpan.FromSeconds(30),
            "a later sweep to try the failing delete again");

        foreach (var spared in new[] { failing, provisioning, foreign, live, young })
        {
            Assert.Contains(emulator.Server.State.Vms, v => v.WorkerId == spared);
        }

        Assert.Contains("Deleting orphan VM of worker " + orphan, _services[1].Output);
        Assert.Contains($"Deleting orphan VM of worker {failing} failed", _services[1].Output);
        var deletes = emulator.Server.Requests.Where(r => r.Method == "DELETE").ToList();
        Assert.Single(deletes,
            r => r.Path.EndsWith(AzureWorkerCloud.VmName(orphan), StringComparison.OrdinalIgnoreCase));
        Assert.All(deletes, r => Assert.True(
            r.Path.EndsWith(AzureWorkerCloud.VmName(orphan), StringComparison.OrdinalIgnoreCase)
                || r.Path.EndsWith(AzureWorkerCloud.VmName(failing), StringComparison.OrdinalIgnoreCase),
            $"DELETE {r.Path}"));
        // Only the VM actually deleted is counted, not the one whose delete failed.
        using var http = new HttpClient();
        await Eventually.True(
            async () => OrphanCount().IsMatch(await http.GetStringAsync(new Uri(_services[1].HttpAddress, "/metrics"))),
            TimeSpan.FromSeconds(15),
            "dw_workers_reaped_total{reason=\"orphan\"} 1 on the reaper's /metrics");
    }

    [GeneratedRegex(@"(?m)^dw_workers_reaped_total\{[^}]*reason=""orphan""[^}]*\} 1(\s|$)")]
    private static partial Regex OrphanCount();

    Guid Seed(string managedBy, string state, Guid? worker = null, DateTimeOffset? createdAt = null)
    {
        var workerId = worker ?? Guid.NewGuid();
        emulator.Server.State.Seed(
            ArmEmulatorFixture.SubscriptionId,
            ArmEmulatorFixture.ResourceGroup,
            AzureWorkerCloud.VmName(workerId),
            new Dictionary<string, string>
            {
                [AzureWorkerCloud.ManagedByTag] = managedBy,
                [AzureWorkerCloud.WorkerIdTag] = workerId.ToString(),
                [AzureWorkerCloud.PoolTag] = "ubuntu-22.04",
                [AzureWorkerCloud.CreatedAtTag] = (createdAt ?? DateTimeOffset.UtcNow.AddHours(-1)).ToString("O"),
            },
            state);
        return workerId;
    }
}
