using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

public sealed class OutcomeRecorder(LeaseLedger ledger) : IConsumer<LeaseGranted>, IConsumer<LeaseRejected>
{
    public Task Consume(ConsumeContext<LeaseGranted> context)
    {
        ledger.Answered(context.Message);
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<LeaseRejected> context)
    {
        ledger.Answered(context.Message);
        return Task.CompletedTask;
    }
}

/// <summary>
/// The whole lifecycle across separate OS processes on the real broker and database: two LeaseSaga, two
/// Provisioner, one Trust and one Reaper, with the simulated cloud and timeouts in seconds. Instances
/// publish <c>LeaseRequested</c> (some twice) and <c>LeaseReleased</c> exactly as a product instance would.
/// </summary>
public sealed class LeaseLifecycleTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";
    const int Instances = 20;
    const int LeasesPerInstance = 10;

    readonly List<ServiceProcess> _services = [];
    readonly LeaseLedger _ledger = new();
    IHost _client = null!;

    IReadOnlyDictionary<string, string?> Settings => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "5",
        [$"Pools:{Pool}:MaxWorkers"] = "30",
        [$"Pools:{Pool}:AllocationTimeout"] = "00:02:00",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Lifecycle:IdleTimeout"] = "00:00:05",
        ["Lifecycle:MaxWorkerAge"] = "01:00:00",
        ["Lifecycle:MaxLeaseDuration"] = "00:10:00",
        ["Lifecycle:ProvisioningTimeout"] = "00:01:00",
        ["Lifecycle:TrustTimeout"] = "00:00:30",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:01",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.200",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.100",
    }).ToDictionary();

    public async Task InitializeAsync()
    {
        // The first LeaseSaga migrates the database; the rest may then start together.
        await StartAsync("LeaseSaga");
        await Task.WhenAll(StartAsync("LeaseSaga"), StartAsync("Provisioner"), StartAsync("Provisioner"), StartAsync("Trust"), StartAsync("Reaper"));

        _client = await TestBus.StartAsync(broker.Settings, bus => bus.AddConsumer<OutcomeRecorder>(), (services, _) => services.AddSingleton(_ledger));
    }

    public async Task DisposeAsync()
    {
        await _client.StopAsync();
        _client.Dispose();
        foreach (var service in _services)
        {
            await service.DisposeAsync();
        }
    }

    [Fact]
    public async Task Two_hundred_leases_from_twenty_instances_keep_every_invariant_and_leave_no_vm_behind()
    {
        var bus = _client.Services.GetRequiredService<IBus>();

        await Task.WhenAll(Enumerable.Range(0, Instances).Select(i => PlayInstanceAsync(bus, $"instance-{i:00}", i)));

        var grants = _ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseGranted>().DistinctBy(g => g.LeaseId).ToList();
        var rejections = _ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseRejected>().ToList();
        Assert.True(grants.Count == Instances * LeasesPerInstance, $"{grants.Count} grants; rejections: {string.Join("; ", rejections)}\n{Diagnostics()}");
        Assert.Contains(grants, g => g.Reused);
        Assert.Contains(grants, g => !g.Reused);

        // Drain the hot pool too, then every VM the simulator created must be deleted.
        await bus.Publish(new SetPoolSize(Pool, 0, 30));
        await Eventually.True(
            async () => (await CloudAsync()).All(v => v.Deleted) && await database.ScalarAsync("SELECT count(*) FROM workers") == 0,
            TimeSpan.FromSeconds(120),
            "every VM deleted and every worker gone after the idle timeout",
            Diagnostics);

        var violations = InvariantChecker.Check(_ledger, await CloudAsync(), expectAllDeleted: true);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    /// <summary>One instance: ten leases one after another, every third request published twice, each released after use.</summary>
    async Task PlayInstanceAsync(IBus bus, string instance, int seed)
    {
        var random = new Random(seed);
        var thumbprint = Convert.ToHexString(System.Security.Cryptography.SHA1.HashData(System.Text.Encoding.UTF8.GetBytes(instance)));
        for (var n = 0; n < LeasesPerInstance; n++)
        {
            var request = new LeaseRequested(NewId.NextGuid(), instance, thumbprint, Pool, $"task-{n}", DateTimeOffset.UtcNow);
            _ledger.Requested(request);
            await bus.Publish(request);
            if (n % 3 == 0)
            {
                await bus.Publish(request);
            }

            await Eventually.True(() => _ledger.OutcomesOf(request.LeaseId).Count > 0, TimeSpan.FromSeconds(120), $"an outcome for {instance}'s lease {n}", Diagnostics);
            if (_ledger.OutcomesOf(request.LeaseId)[0] is LeaseGranted)
            {
                await Task.Delay(random.Next(0, 150)); // the task runs
                _ledger.Released(request.LeaseId);
                await bus.Publish(new LeaseReleased(request.LeaseId, instance));
            }
        }
    }

    async Task<IReadOnlyList<CloudRecord>> CloudAsync()
    {
        await using var db = new SimulatedCloudDbContext(SimulatedCloudDbContext.CreateOptions(
            new DatabaseOptions { Provider = DatabaseProvider.Postgres, ConnectionString = database.ConnectionString }));
        var vms = await db.Vms.AsNoTracking().ToListAsync();
        var trusts = await db.Trusts.AsNoTracking().ToListAsync();
        return vms.Select(v => new CloudRecord(
            v.WorkerId,
            v.DeletedAt is not null,
            trusts.Where(t => t.WorkerId == v.WorkerId).Select(t => t.InstanceId).ToList())).ToList();
    }

    string Diagnostics()
    {
        var unanswered = _ledger.Requests.Select(r => r.LeaseId).Distinct().Where(id => _ledger.OutcomesOf(id).Count == 0).ToList();
        var rows = database.RowsAsync(
            "SELECT 'lease ' || \"CorrelationId\" || ' ' || \"CurrentState\" || ' worker ' || coalesce(\"WorkerId\"::text, '-') FROM leases WHERE \"CurrentState\" NOT IN ('Released', 'Rejected', 'Revoked') "
            + "UNION ALL SELECT 'worker ' || \"CorrelationId\" || ' ' || \"CurrentState\" || ' ' || coalesce(\"TrustedInstanceId\", '-') || ' lease ' || coalesce(\"CurrentLeaseId\"::text, '-') FROM workers "
            + "UNION ALL SELECT 'pool ' || \"Name\" || ' ' || \"Book\" FROM pools").GetAwaiter().GetResult();
        var errors = _services.SelectMany(s => s.Output.Split('\n')).Where(l => l.StartsWith("fail:") || l.Contains("Exception:")).Distinct().Take(20);
        return $"{_ledger.Outcomes.Count} outcomes for {_ledger.Requests.Count} requests; unanswered: {string.Join(", ", unanswered)}\n"
               + string.Join("\n", rows) + "\n" + string.Join("\n", errors);
    }

    async Task StartAsync(string project)
    {
        var service = ServiceProcess.Start(project, Settings);
        lock (_services)
        {
            _services.Add(service);
        }

        await service.WaitUntilStartedAsync(TimeSpan.FromSeconds(90));
    }
}
