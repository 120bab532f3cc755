using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>The lifecycle run (<see cref="LifecycleRun"/>) on the simulated cloud, which records its VMs and trusts in
/// the shared database.</summary>
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

    protected override Task<IReadOnlyList<CloudRecord>> CloudAsync()
        => ServiceRecords.ReadSimulatedCloudAsync(Database.ConnectionString);
}
