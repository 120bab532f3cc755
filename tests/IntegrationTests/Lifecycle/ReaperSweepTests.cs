using DynamicWorkers.Cloud;
using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.IntegrationTests.Support;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>The Reaper's orphan sweep, as separate processes on the real broker and database.</summary>
public sealed class ReaperSweepTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    readonly List<ServiceProcess> _services = [];

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        ["Pools:ubuntu-22.04:HotTarget"] = "0",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Reaper:SweepInterval"] = "00:00:01",
        ["Reaper:OrphanGrace"] = "00:00:02",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00",
    }).ToDictionary();

    public async Task InitializeAsync()
    {
        foreach (var project in new[] { "LeaseSaga", "Reaper" })
        {
            var service = ServiceProcess.Start(project, Settings);
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
    public async Task A_vm_with_no_live_worker_is_deleted_and_one_still_provisioning_is_spared()
    {
        var options = SimulatedCloudDbContext.CreateOptions(
            new DatabaseOptions { Provider = DatabaseProvider.Postgres, ConnectionString = database.ConnectionString });
        var cloud =
            new SimulatedCloud(options, Options.Create(new SimulatedCloudOptions { ProvisionDelay = TimeSpan.Zero }));
        var orphan = Guid.NewGuid();
        await cloud.CreateAsync(orphan, new VmSpec("ubuntu-22.04", "image", "size"), CancellationToken.None);
        var provisioning = Guid.NewGuid();
        await using (var db = new SimulatedCloudDbContext(options))
        {
            db.Vms.Add(new SimulatedVm { WorkerId = provisioning, Pool = "ubuntu-22.04",
                CreatedAt = DateTimeOffset.UtcNow.AddHours(-1) });
            await db.SaveChangesAsync();
        }

        await Eventually.True(
            async () => (await cloud.ListAsync(CancellationToken.None)).All(v => v.WorkerId != orphan),
            TimeSpan.FromSeconds(60),
            "the orphan VM to be deleted",
            () => string.Join("\n----\n", _services.Select(s => s.Output)));

        Assert.Contains(await cloud.ListAsync(CancellationToken.None), v => v.WorkerId == provisioning);
        // The log line travels through the process's console writer and pipe, a moment behind the delete itself.
        await Eventually.True(
            () => _services[1].Output.Contains("Deleting orphan VM of worker " + orphan, StringComparison.Ordinal),
            TimeSpan.FromSeconds(10), "the reaper to log the orphan's deletion", () => _services[1].Output);
    }
}
