using DynamicWorkers.Cloud;
using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.IntegrationTests.Support;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.IntegrationTests.Cloud;

/// <summary>
/// The simulated cloud on a real database, as several processes share it. Each database already holds a
/// table of someone else's, so the schema has to be created next to it (EnsureCreated would do nothing).
/// </summary>
public abstract class SimulatedCloudTests : IAsyncLifetime
{
    const string UnrelatedTable = "CREATE TABLE IF NOT EXISTS unrelated_things (id integer PRIMARY KEY)";

    static readonly VmSpec Spec = new("linux", "ubuntu-24.04", "Standard_D2s_v5");

    static readonly SimulatedCloudOptions Fast = new()
    {
        ProvisionDelay = TimeSpan.FromMilliseconds(300),
        TrustDelay = TimeSpan.Zero,
        DeleteDelay = TimeSpan.Zero,
    };

    protected abstract IReadOnlyDictionary<string, string?> Settings { get; }

    /// <summary>A database nobody used yet (apart from the unrelated table), removed when disposed.</summary>
    protected abstract Task<(IReadOnlyDictionary<string, string?> Settings, IAsyncDisposable Owner)> NewDatabaseAsync();

    public async Task InitializeAsync() => await ExecuteAsync(Settings, UnrelatedTable);

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task Concurrent_creates_of_one_worker_yield_one_vm()
    {
        var cloud = NewCloud();
        var workerId = Guid.NewGuid();

        var vms = await Task.WhenAll(
            Enumerable.Range(0, 5).Select(_ => cloud.CreateAsync(workerId, Spec, CancellationToken.None)));

        Assert.Single(vms.Select(v => (v.Address, v.AgentThumbprint)).Distinct());
        var vm = vms[0];
        Assert.False(vm.Provisioning);
        Assert.Matches(@"^10\.77\.\d{1,3}\.\d{1,3}:10933$", vm.Address);
        Assert.Matches("^[0-9A-F]{40}$", vm.AgentThumbprint);
        await using var db = NewContext(Settings);
        Assert.Equal(1, await db.Vms.CountAsync(v => v.WorkerId == workerId));
    }

    [Fact]
    public async Task A_redelivered_create_waits_out_only_the_rest_of_the_delay_and_finds_the_same_vm()
    {
        var cloud = NewCloud(new SimulatedCloudOptions { ProvisionDelay = TimeSpan.FromSeconds(2) });
        var workerId = Guid.NewGuid();

        var first = cloud.CreateAsync(workerId, Spec, CancellationToken.None);
        await Eventually.True(
            async ()
                => (await cloud.ListAsync(CancellationToken.None)).Any(v => v.WorkerId == workerId && v.Provisioning),
            TimeSpan.FromSeconds(10),
            "the VM to be listed as provisioning");
        // A second consumer (a redelivery) in another process: its own cloud object.
        var second = await NewCloud(new SimulatedCloudOptions { ProvisionDelay = TimeSpan.FromSeconds(2) })
            .CreateAsync(workerId, Spec, CancellationToken.None);

        Assert.Equal((await first).AgentThumbprint, second.AgentThumbprint);
        Assert.False(second.Provisioning);
        Assert.Contains(await cloud.ListAsync(CancellationToken.None), v => v.WorkerId == workerId && !v.Provisioning);
        Assert.Equal(second, await cloud.CreateAsync(workerId, Spec, CancellationToken.None));
    }

    [Fact]
    public async Task Trust_is_recorded_once_every_attempt_is_logged_and_a_second_instance_is_refused()
    {
        var cloud = NewCloud();
        var workerId = Guid.NewGuid();
        var vm = await cloud.CreateAsync(workerId, Spec, CancellationToken.None);
        var thumbprint = new string('A', 40);

        Assert.Equal(vm.AgentThumbprint,
            await cloud.TrustAsync(workerId, "instance-a", thumbprint, CancellationToken.None));
        Assert.Equal(vm.AgentThumbprint,
            await cloud.TrustAsync(workerId, "instance-a", thumbprint, CancellationToken.None));
        var refused = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.TrustAsync(workerId, "instance-b", new string('B', 40), CancellationToken.None));

        Assert.Equal(SimulatedCloud.AlreadyTrustsAnotherInstance, refused.Reason);
        await using var db = NewContext(Settings);
        var row = await db.Vms.SingleAsync(v => v.WorkerId == workerId);
        Assert.Equal(("instance-a", thumbprint), (row.TrustedInstanceId, row.TrustedThumbprint));
        var log = await db.Trusts.Where(t => t.WorkerId == workerId).OrderBy(t => t.Id)
            .Select(t => new { t.InstanceId, t.Outcome }).ToListAsync();
        Assert.Equal(
            [("instance-a", SimulatedVmTrust.Trusted), ("instance-a", SimulatedVmTrust.Trusted),
                ("instance-b", SimulatedCloud.AlreadyTrustsAnotherInstance)],
            log.Select(t => (t.InstanceId, t.Outcome)));
        Assert.Contains(await cloud.ListAsync(CancellationToken.None),
            v => v.WorkerId == workerId && v.TrustedInstanceId == "instance-a");
    }

    [Fact]
    public async Task Of_instances_racing_to_be_trusted_exactly_one_wins()
    {
        var cloud = NewCloud();
        var workerId = Guid.NewGuid();
        await cloud.CreateAsync(workerId, Spec, CancellationToken.None);

        var attempts = await Task.WhenAll(Enumerable.Range(0, 6).Select(async i =>
        {
            try
            {
                await NewCloud()
                    .TrustAsync(workerId, $"instance-{i}", new string((char)('A' + i), 40), CancellationToken.None);
                return true;
            }
            catch (WorkerCloudException e) when (e.Reason == SimulatedCloud.AlreadyTrustsAnotherInstance)
            {
                return false;
            }
        }));

        Assert.Single(attempts, won => won);
        await using var db = NewContext(Settings);
        Assert.Equal(6, await db.Trusts.CountAsync(t => t.WorkerId == workerId));
        Assert.Equal(1,
            await db.Trusts.CountAsync(t => t.WorkerId == workerId && t.Outcome == SimulatedVmTrust.Trusted));
    }

    [Fact]
    public async Task Delete_is_idempotent_and_a_deleted_vm_is_no_longer_listed()
    {
        var cloud = NewCloud();
        var kept = Guid.NewGuid();
        var deleted = Guid.NewGuid();
        await Task.WhenAll(cloud.CreateAsync(kept, Spec, CancellationToken.None),
            cloud.CreateAsync(deleted, Spec, CancellationToken.None));

        await cloud.DeleteAsync(deleted, CancellationToken.None);
        await cloud.DeleteAsync(deleted, CancellationToken.None);
        await cloud.DeleteAsync(Guid.NewGuid(), CancellationToken.None);

        var listed = (await cloud.ListAsync(CancellationToken.None)).Select(v => v.WorkerId).ToList();
        Assert.Contains(kept, listed);
        Assert.DoesNotContain(deleted, listed);
        await using var db = NewContext(Settings);
        Assert.NotNull((await db.Vms.SingleAsync(v => v.WorkerId == deleted)).DeletedAt);
    }

    [Fact]
    public async Task A_failure_rate_of_1_fails_every_create_and_every_trust()
    {
        var failing = NewCloud(new SimulatedCloudOptions
        {
            ProvisionDelay = TimeSpan.Zero,
            TrustDelay = TimeSpan.Zero,
            ProvisionFailureRate = 1.0,
            TrustFailureRate = 1.0,
        });
        var workerId = Guid.NewGuid();

        var create = await Assert.ThrowsAsync<WorkerCloudException>(
            () => failing.CreateAsync(workerId, Spec, CancellationToken.None));
        var again = await Assert.ThrowsAsync<WorkerCloudException>(
            () => failing.CreateAsync(workerId, Spec, CancellationToken.None));

        Assert.Equal(SimulatedCloud.ProvisioningFailure, create.Reason);
        Assert.Equal(SimulatedCloud.ProvisioningFailure, again.Reason);
        Assert.DoesNotContain(await failing.ListAsync(CancellationToken.None), v => v.WorkerId == workerId);

        var healthy = Guid.NewGuid();
        await NewCloud().CreateAsync(healthy, Spec, CancellationToken.None);
        var trust = await Assert.ThrowsAsync<WorkerCloudException>(
            () => failing.TrustAsync(healthy, "instance-a", new string('A', 40), CancellationToken.None));
        Assert.Equal(SimulatedCloud.TrustFailure, trust.Reason);
        await using var db = NewContext(Settings);
        Assert.Equal(SimulatedCloud.TrustFailure, (await db.Trusts.SingleAsync(t => t.WorkerId == healthy)).Outcome);
    }

    [Fact]
    public async Task A_trust_log_made_before_outcomes_were_recorded_gets_the_column()
    {
        var (settings, owner) = await NewDatabaseAsync();
        await using var _ = owner;
        await NewCloud(settings: settings).EnsureSchemaAsync(CancellationToken.None);
        await ExecuteAsync(settings, "ALTER TABLE simulated_vm_trusts DROP COLUMN \"Outcome\"");
        var cloud = NewCloud(settings: settings);
        var workerId = Guid.NewGuid();
        await cloud.CreateAsync(workerId, Spec, CancellationToken.None);

        await cloud.TrustAsync(workerId, "instance-a", new string('A', 40), CancellationToken.None);

        await using var db = NewContext(settings);
        Assert.Equal(SimulatedVmTrust.Trusted, (await db.Trusts.SingleAsync(t => t.WorkerId == workerId)).Outcome);
    }

    [Fact]
    public async Task A_vm_marked_dead_by_one_process_is_not_running_for_another_and_a_deleted_or_unknown_one_neither()
    {
        var provisioner = NewCloud();
        var leaseService = NewCloud();
        var (dead, alive, deleted) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        await Task.WhenAll(
            provisioner.CreateAsync(dead, Spec, CancellationToken.None),
            provisioner.CreateAsync(alive, Spec, CancellationToken.None),
            provisioner.CreateAsync(deleted, Spec, CancellationToken.None));
        Assert.Equal(VmHealth.Running, await leaseService.CheckAsync(dead, CancellationToken.None));

        Assert.True(await NewCloud().MarkDeadAsync(dead, CancellationToken.None));
        await provisioner.DeleteAsync(deleted, CancellationToken.None);

        Assert.Equal(VmHealth.NotRunning, await leaseService.CheckAsync(dead, CancellationToken.None));
        Assert.Equal(VmHealth.Running, await leaseService.CheckAsync(alive, CancellationToken.None));
        Assert.Equal(VmHealth.NotRunning, await leaseService.CheckAsync(deleted, CancellationToken.None));
        Assert.Equal(VmHealth.NotRunning, await leaseService.CheckAsync(Guid.NewGuid(), CancellationToken.None));
        // Dead is not deleted: it is still listed, so the sweep and the checker still see a VM to delete.
        Assert.Contains(dead, (await leaseService.ListAsync(CancellationToken.None)).Select(v => v.WorkerId));
        Assert.False(await leaseService.MarkDeadAsync(deleted, CancellationToken.None));
    }

    [Fact]
    public async Task A_vm_table_made_before_vms_could_die_gets_the_column()
    {
        var (settings, owner) = await NewDatabaseAsync();
        await using var _ = owner;
        var before = NewCloud(settings: settings);
        var workerId = Guid.NewGuid();
        await before.CreateAsync(workerId, Spec, CancellationToken.None);
        await ExecuteAsync(settings, "ALTER TABLE simulated_vms DROP COLUMN \"DeadAt\"");
        var cloud = NewCloud(settings: settings);

        Assert.True(await cloud.MarkDeadAsync(workerId, CancellationToken.None));

        Assert.Equal(VmHealth.NotRunning, await cloud.CheckAsync(workerId, CancellationToken.None));
    }

    [Fact]
    public async Task Two_clouds_starting_at_once_on_a_database_without_their_tables_both_work()
    {
        var (settings, owner) = await NewDatabaseAsync();
        await using var _ = owner;
        await ExecuteAsync(settings, UnrelatedTable);
        var first = NewCloud(settings: settings);
        var second = NewCloud(settings: settings);

        await Task.WhenAll(first.EnsureSchemaAsync(CancellationToken.None),
            second.EnsureSchemaAsync(CancellationToken.None));
        var a = Guid.NewGuid();
        var b = Guid.NewGuid();
        await Task.WhenAll(first.CreateAsync(a, Spec, CancellationToken.None),
            second.CreateAsync(b, Spec, CancellationToken.None));

        var listed = (await first.ListAsync(CancellationToken.None)).Select(v => v.WorkerId).ToHashSet();
        Assert.True(listed.SetEquals([a, b]));
    }

    SimulatedCloud NewCloud(SimulatedCloudOptions? options = null,
        IReadOnlyDictionary<string, string?>? settings = null)
        => new(SimulatedCloudDbContext.CreateOptions(Database(settings ?? Settings)), Options.Create(options ?? Fast));

    static SimulatedCloudDbContext NewContext(IReadOnlyDictionary<string, string?> settings)
        => new(SimulatedCloudDbContext.CreateOptions(Database(settings)));

    static async Task ExecuteAsync(IReadOnlyDictionary<string, string?> settings, string sql)
    {
        await using var db = NewContext(settings);
        await db.Database.ExecuteSqlRawAsync(sql);
    }

    static DatabaseOptions Database(IReadOnlyDictionary<string, string?> settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        return configuration.GetSection(DatabaseOptions.Section)
            .GetValidated<DatabaseOptions>(
                o => o.ConnectionString = configuration.GetConnectionString("Default") ?? "");
    }
}

public sealed class PostgresSimulatedCloudTests(PostgresTestDatabase database) : SimulatedCloudTests,
    IClassFixture<PostgresTestDatabase>
{
    protected override IReadOnlyDictionary<string, string?> Settings => database.Settings;

    protected override async Task<(IReadOnlyDictionary<string, string?>, IAsyncDisposable)> NewDatabaseAsync()
    {
        var fresh = new PostgresTestDatabase();
        await fresh.InitializeAsync();
        return (fresh.Settings, new Owner(fresh.DisposeAsync));
    }
}

public sealed class SqliteSimulatedCloudTests(SqliteTestDatabase database) : SimulatedCloudTests,
    IClassFixture<SqliteTestDatabase>
{
    protected override IReadOnlyDictionary<string, string?> Settings => database.Settings;

    protected override Task<(IReadOnlyDictionary<string, string?>, IAsyncDisposable)> NewDatabaseAsync()
    {
        var fresh = new SqliteTestDatabase();
        return Task.FromResult<(IReadOnlyDictionary<string, string?>,
            IAsyncDisposable)>((fresh.Settings, new Owner(() =>
        {
            fresh.Dispose();
            return Task.CompletedTask;
        })));
    }
}

sealed class Owner(Func<Task> dispose) : IAsyncDisposable
{
    public async ValueTask DisposeAsync() => await dispose();
}
