using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>
/// The lifecycle run (<see cref="LifecycleRun"/>) with <c>Cloud:Provider = Azure</c>: the six processes talk to
/// the ARM emulator in this test process through the real SDK. Whom a VM trusted is read from the Run Commands
/// the emulator received (the thumbprints each script named), mapped back to the instances that lease with them.
/// </summary>
public sealed class AzureLeaseLifecycleTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database,
    ArmEmulatorFixture emulator)
    : LifecycleRun(broker, database), IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>,
        IClassFixture<ArmEmulatorFixture>
{
    protected override IReadOnlyDictionary<string, string?> CloudSettings => emulator.Settings;

    [Fact]
    public async Task Twenty_four_leases_on_azure_keep_every_invariant_and_leave_no_vm_in_the_emulator()
    {
        await PlayAndCheckAsync(instances: 8, leasesPerInstance: 3);

        Assert.Empty(emulator.Server.State.Vms);
        Assert.Equal(0, emulator.Server.State.NetworkInterfaceCount);
        Assert.NotEmpty(emulator.Server.State.RunCommands);
    }

    protected override Task<IReadOnlyList<CloudRecord>> CloudAsync()
    {
        var instanceByThumbprint = Ledger.Requests.GroupBy(r => r.ServerThumbprint.ToUpperInvariant())
            .ToDictionary(g => g.Key, g => g.First().InstanceId);
        IReadOnlyList<CloudRecord> records = emulator.Server.State.AllVms
            .Where(v => v.WorkerId is not null)
            .Select(v => new CloudRecord(
                v.WorkerId!.Value,
                v.Deleted,
                v.TrustedThumbprints.Select(t => new TrustAttempt(
                    instanceByThumbprint.GetValueOrDefault(t, $"unknown thumbprint {t}"), Accepted: true)).ToList()))
            .ToList();
        return Task.FromResult(records);
    }
}
