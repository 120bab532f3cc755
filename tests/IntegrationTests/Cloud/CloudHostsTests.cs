using System.Collections.Concurrent;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.IntegrationTests.Cloud;

/// <summary>Every event the cloud services publish, in arrival order.</summary>
public sealed class CloudEvents
{
    public ConcurrentQueue<object> All { get; } = new();

    public T? Find<T>(Func<T, bool> match) where T : class => All.OfType<T>().FirstOrDefault(match);
}

public sealed class CloudEventsConsumer(CloudEvents events) :
    IConsumer<WorkerProvisioned>,
    IConsumer<WorkerProvisioningFailed>,
    IConsumer<WorkerTrusted>,
    IConsumer<WorkerTrustFailed>,
    IConsumer<WorkerDeprovisioned>
{
    public Task Consume(ConsumeContext<WorkerProvisioned> context) => Record(context.Message);
    public Task Consume(ConsumeContext<WorkerProvisioningFailed> context) => Record(context.Message);
    public Task Consume(ConsumeContext<WorkerTrusted> context) => Record(context.Message);
    public Task Consume(ConsumeContext<WorkerTrustFailed> context) => Record(context.Message);
    public Task Consume(ConsumeContext<WorkerDeprovisioned> context) => Record(context.Message);

    Task Record(object message)
    {
        events.All.Enqueue(message);
        return Task.CompletedTask;
    }
}

/// <summary>
/// Provisioner, Trust and Reaper as deployed: three OS processes on real RabbitMQ and PostgreSQL, sharing
/// the simulated cloud through the database. This test process sends the commands and listens to the events.
/// </summary>
public sealed class CloudHostsTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(90);
    static readonly TimeSpan EventDeadline = TimeSpan.FromSeconds(30);

    readonly List<ServiceProcess> _services = [];
    IHost _client = null!;

    CloudEvents Events => _client.Services.GetRequiredService<CloudEvents>();

    public async Task InitializeAsync()
    {
        var settings = broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
        {
            ["Cloud:Provider"] = "Simulated",
            ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.200",
            ["Cloud:Simulated:TrustDelay"] = "00:00:00.100",
            ["Cloud:Simulated:DeleteDelay"] = "00:00:00.100",
        }).ToList();
        // All three at once on a database without the cloud's tables: they race to create them.
        foreach (var project in new[] { "Provisioner", "Trust", "Reaper" })
        {
            _services.Add(ServiceProcess.Start(project, settings));
        }

        await Task.WhenAll(_services.Select(s => s.WaitUntilStartedAsync(StartDeadline)));

        _client = await TestBus.StartAsync(
            broker.Settings,
            bus => bus.AddConsumer<CloudEventsConsumer>().Endpoint(e => e.Name = "cloud-events"),
            (services, _) => services.AddSingleton<CloudEvents>());
    }

    public async Task DisposeAsync()
    {
        foreach (var service in _services)
        {
            await service.DisposeAsync();
        }

        await _client.StopAsync();
        _client.Dispose();
    }

    [Fact]
    public async Task A_worker_is_provisioned_trusted_and_deprovisioned_by_three_processes()
    {
        var workerId = Guid.NewGuid();
        var instanceThumbprint = new string('C', 64);

        await SendAsync("provision-worker", new ProvisionWorker(workerId, "linux", "ubuntu-24.04", "Standard_D2s_v5"));
        var provisioned = await EventAsync<WorkerProvisioned>(e => e.WorkerId == workerId);
        Assert.Matches(@"^10\.77\.\d{1,3}\.\d{1,3}:10933$", provisioned.Address);
        Assert.Equal(1, await database.ScalarAsync(
            $"SELECT COUNT(*) FROM simulated_vms WHERE \"WorkerId\" = '{workerId}' AND \"ReadyAt\" IS NOT NULL AND "
                + $"\"AgentThumbprint\" = '{provisioned.AgentThumbprint}'"));

        var leaseId = Guid.NewGuid();
        await SendAsync("trust-worker", new TrustWorker(workerId, leaseId, "instance-1", instanceThumbprint));
        var trusted = await EventAsync<WorkerTrusted>(e => e.WorkerId == workerId);
        Assert.Equal((leaseId, "instance-1", provisioned.AgentThumbprint),
            (trusted.LeaseId, trusted.InstanceId, trusted.AgentThumbprint));
        Assert.Equal(1, await database.ScalarAsync(
            $"SELECT COUNT(*) FROM simulated_vms WHERE \"WorkerId\" = '{workerId}' AND \"TrustedInstanceId\" = "
                + $"'instance-1' AND \"TrustedThumbprint\" = '{instanceThumbprint}'"));
        Assert.Equal(1, await TrustRowsAsync(workerId));

        await SendAsync("deprovision-worker", new DeprovisionWorker(workerId, "test"));
        await EventAsync<WorkerDeprovisioned>(e => e.WorkerId == workerId);
        Assert.Equal(1, await database.ScalarAsync(
            $"SELECT COUNT(*) FROM simulated_vms WHERE \"WorkerId\" = '{workerId}' AND \"DeletedAt\" IS NOT NULL"));
        Assert.Equal(1,
            await database.ScalarAsync($"SELECT COUNT(*) FROM simulated_vms WHERE \"WorkerId\" = '{workerId}'"));
    }

    [Fact]
    public async Task A_shell_metacharacter_thumbprint_or_a_second_instance_is_refused_and_never_trusted()
    {
        var workerId = Guid.NewGuid();
        await SendAsync("provision-worker", new ProvisionWorker(workerId, "linux", "ubuntu-24.04", "Standard_D2s_v5"));
        await EventAsync<WorkerProvisioned>(e => e.WorkerId == workerId);

        await SendAsync("trust-worker", new TrustWorker(workerId, Guid.NewGuid(), "instance-evil", "abc; rm -rf /"));
        var invalid =
            await EventAsync<WorkerTrustFailed>(e => e.WorkerId == workerId && e.InstanceId == "instance-evil");
        Assert.Equal("InvalidThumbprint", invalid.Reason);
        Assert.Equal(0, await TrustRowsAsync(workerId));
        Assert.Equal(1, await database.ScalarAsync(
            $"SELECT COUNT(*) FROM simulated_vms WHERE \"WorkerId\" = '{workerId}' AND \"TrustedInstanceId\" IS NULL"));

        await SendAsync("trust-worker", new TrustWorker(workerId, Guid.NewGuid(), "instance-1", new string('a', 40)));
        await EventAsync<WorkerTrusted>(e => e.WorkerId == workerId);
        await SendAsync("trust-worker", new TrustWorker(workerId, Guid.NewGuid(), "instance-2", new string('b', 40)));
        var refused = await EventAsync<WorkerTrustFailed>(e => e.WorkerId == workerId && e.InstanceId == "instance-2");
        Assert.Equal("AlreadyTrustsAnotherInstance", refused.Reason);
        // The log keeps every trust command that reached the cloud, the refused one too; one was carried out.
        Assert.Equal(2, await TrustRowsAsync(workerId));
        Assert.Equal(1, await database.ScalarAsync(
            $"SELECT COUNT(*) FROM simulated_vm_trusts WHERE \"WorkerId\" = '{workerId}' AND \"Outcome\" = 'Trusted'"));
    }

    async Task SendAsync<T>(string queue, T message) where T : class
    {
        var endpoint = await _client.Services.GetRequiredService<IBus>().GetSendEndpoint(CloudQueues.Address(queue));
        await endpoint.Send(message);
    }

    async Task<T> EventAsync<T>(Func<T, bool> match) where T : class
    {
        await Eventually.True(() => Events.Find(match) is not null, EventDeadline, $"a {typeof(T).Name}", Diagnostics);
        return Events.Find(match)!;
    }

    Task<long> TrustRowsAsync(Guid workerId)
        => database.ScalarAsync($"SELECT COUNT(*) FROM simulated_vm_trusts WHERE \"WorkerId\" = '{workerId}'");

    string Diagnostics()
        => $"events: {string.Join(", ", Events.All)}\n" + string.Join("\n", _services.Select(s => s.Output));
}

/// <summary>An unknown provider, or Azure without its settings, stops start-up at once, in one line.</summary>
public sealed class CloudProviderConfigurationTests
{
    [Theory]
    [InlineData("Provisioner", "Azure", "Cloud:Azure:SubscriptionId is required")]
    [InlineData("Trust", "Oracle", "Provider")]
    [InlineData("Reaper", "Azure", "Cloud:Azure:SubnetId is required")]
    public async Task An_unknown_or_unconfigured_cloud_provider_stops_start_up_with_one_clear_line(string project,
        string provider, string expected)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Database:Provider"] = "Postgres",
            ["ConnectionStrings:Default"] = "Host=127.0.0.1;Database=never-reached",
            ["Cloud:Provider"] = provider,
        };
        await using var service = ServiceProcess.Start(project, settings);

        await service.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(2, service.ExitCode);
        var line = Assert.Single(service.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"{project.ToLowerInvariant()}: invalid configuration: ", line);
        Assert.Contains(expected, line);
    }
}
