using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.IntegrationTests.Support;
using Microsoft.EntityFrameworkCore;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>The lifecycle run (<see cref="LifecycleRun"/>) on the simulated cloud, which records its VMs and trusts in the shared database.</summary>
public sealed class LeaseLifecycleTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : LifecycleRun(broker, database), IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>
{
    protected override IReadOnlyDictionary<string, string?> CloudSettings => new Dictionary<string, string?>
    {
        ["Cloud:Provider"] = "Simulated",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:01",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.200",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.100",
    };

    [Fact]
    public Task Two_hundred_leases_from_twenty_instances_keep_every_invariant_and_leave_no_vm_behind()
        => PlayAndCheckAsync(instances: 20, leasesPerInstance: 10);

    protected override async Task<IReadOnlyList<CloudRecord>> CloudAsync()
    {
        await using var db = new SimulatedCloudDbContext(SimulatedCloudDbContext.CreateOptions(
            new DatabaseOptions { Provider = DatabaseProvider.Postgres, ConnectionString = Database.ConnectionString }));
        var vms = await db.Vms.AsNoTracking().ToListAsync();
        var trusts = await db.Trusts.AsNoTracking().ToListAsync();
        return vms.Select(v => new CloudRecord(
            v.WorkerId,
            v.DeletedAt is not null,
            trusts.Where(t => t.WorkerId == v.WorkerId).Select(t => t.InstanceId).ToList())).ToList();
    }
}
