using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

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
/// Provisioner, one Trust and one Reaper, with timeouts in seconds. Instances publish <c>LeaseRequested</c>
/// (every third twice) and <c>LeaseReleased</c> exactly as a product instance would. A subclass picks the cloud
/// (its settings, and how to read back every VM it ever made and whom each trusted).
/// </summary>
public abstract class LifecycleRun(RabbitMqTestVirtualHost broker, PostgresTestDatabase database) : IAsyncLifetime
{
    protected const string Pool = "ubuntu-22.04";
    const int MaxWorkers = 30;

    readonly List<ServiceProcess> _services = [];
    IHost _client = null!;

    protected LeaseLedger Ledger { get; } = new();

    protected PostgresTestDatabase Database => database;

    /// <summary>The <c>Cloud:*</c> settings of every service.</summary>
    protected abstract IReadOnlyDictionary<string, string?> CloudSettings { get; }

    /// <summary>Every VM the cloud ever created, deleted or not, with the instances it was told to trust.</summary>
    protected abstract Task<IReadOnlyList<CloudRecord>> CloudAsync();

    IReadOnlyDictionary<string, string?> Settings => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "5",
        [$"Pools:{Pool}:MaxWorkers"] = $"{MaxWorkers}",
        [$"Pools:{Pool}:AllocationTimeout"] = "00:02:00",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Lifecycle:IdleTimeout"] = "00:00:05",
        ["Lifecycle:MaxWorkerAge"] = "01:00:00",
        ["Lifecycle:MaxLeaseDuration"] = "00:10:00",
        ["Lifecycle:ProvisioningTimeout"] = "00:01:00",
        ["Lifecycle:TrustTimeout"] = "00:00:30",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
    }).Concat(CloudSettings).ToDictionary();

    public async Task InitializeAsync()
    {
        // The first LeaseSaga migrates the database; the rest may then start together.
        await StartAsync("LeaseSaga");
        await Task.WhenAll(StartAsync("LeaseSaga"), StartAsync("Provisioner"), StartAsync("Provisioner"), StartAsync("Trust"), StartAsync("Reaper"));

        _client = await TestBus.StartAsync(broker.Settings, bus => bus.AddConsumer<OutcomeRecorder>(), (services, _) => services.AddSingleton(Ledger));
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

    /// <summary>
    /// Plays the instances to the end, checks that every lease was granted and that re-use happened, drains the
    /// pool, waits until the cloud holds no VM and no worker is left, then runs the <see cref="InvariantChecker"/>.
    /// </summary>
    protected async Task PlayAndCheckAsync(int instances, int leasesPerInstance)
    {
        var bus = _client.Services.GetRequiredService<IBus>();

        await Task.WhenAll(Enumerable.Range(0, instances).Select(i => PlayInstanceAsync(bus, $"instance-{i:00}", i, leasesPerInstance)));

        var grants = Ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseGranted>().DistinctBy(g => g.LeaseId).ToList();
        var rejections = Ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseRejected>().ToList();
        Assert.True(grants.Count == instances * leasesPerInstance, $"{grants.Count} grants; rejections: {string.Join("; ", rejections)}\n{Diagnostics()}");
        Assert.Contains(grants, g => g.Reused);
        Assert.Contains(grants, g => !g.Reused);

        // Drain the hot pool too, then every VM the cloud created must be deleted.
        await bus.Publish(new SetPoolSize(Pool, 0, MaxWorkers));
        await Eventually.True(
            async () => (await CloudAsync()).All(v => v.Deleted) && await database.ScalarAsync("SELECT count(*) FROM workers") == 0,
            TimeSpan.FromSeconds(120),
            "every VM deleted and every worker gone after the idle timeout",
            Diagnostics);

        var violations = InvariantChecker.Check(Ledger, await CloudAsync(), expectAllDeleted: true);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    /// <summary>The certificate thumbprint each instance leases with (a product instance has one of its own).</summary>
    protected static string ThumbprintOf(string instance)
        => Convert.ToHexString(System.Security.Cryptography.SHA1.HashData(System.Text.Encoding.UTF8.GetBytes(instance)));

    /// <summary>One instance: leases one after another, every third request published twice, each released after use.</summary>
    async Task PlayInstanceAsync(IBus bus, string instance, int seed, int leases)
    {
        var random = new Random(seed);
        var thumbprint = ThumbprintOf(instance);
        for (var n = 0; n < leases; n++)
        {
            var request = new LeaseRequested(NewId.NextGuid(), instance, thumbprint, Pool, $"task-{n}", DateTimeOffset.UtcNow);
            Ledger.Requested(request);
            await bus.Publish(request);
            if (n % 3 == 0)
            {
                await bus.Publish(request);
            }

            await Eventually.True(() => Ledger.OutcomesOf(request.LeaseId).Count > 0, TimeSpan.FromSeconds(120), $"an outcome for {instance}'s lease {n}", Diagnostics);
            if (Ledger.OutcomesOf(request.LeaseId)[0] is LeaseGranted)
            {
                await Task.Delay(random.Next(0, 150)); // the task runs
                Ledger.Released(request.LeaseId);
                await bus.Publish(new LeaseReleased(request.LeaseId, instance));
            }
        }
    }

    string Diagnostics()
    {
        var unanswered = Ledger.Requests.Select(r => r.LeaseId).Distinct().Where(id => Ledger.OutcomesOf(id).Count == 0).ToList();
        var rows = database.RowsAsync(
            "SELECT 'lease ' || \"CorrelationId\" || ' ' || \"CurrentState\" || ' worker ' || coalesce(\"WorkerId\"::text, '-') FROM leases WHERE \"CurrentState\" NOT IN ('Released', 'Rejected', 'Revoked') "
            + "UNION ALL SELECT 'worker ' || \"CorrelationId\" || ' ' || \"CurrentState\" || ' ' || coalesce(\"TrustedInstanceId\", '-') || ' lease ' || coalesce(\"CurrentLeaseId\"::text, '-') FROM workers "
            + "UNION ALL SELECT 'pool ' || \"Name\" || ' ' || \"Book\" FROM pools").GetAwaiter().GetResult();
        var errors = _services.SelectMany(s => s.Output.Split('\n')).Where(l => l.StartsWith("fail:") || l.Contains("Exception:")).Distinct().Take(20);
        return $"{Ledger.Outcomes.Count} outcomes for {Ledger.Requests.Count} requests; unanswered: {string.Join(", ", unanswered)}\n"
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
