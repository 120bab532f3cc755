using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Cli;

/// <summary>The <c>dw</c> and wire-format tests share one running system.</summary>
[CollectionDefinition(Name)]
public sealed class RunningSystemCollection : ICollectionFixture<DwSystem>
{
    public const string Name = "running system";
}

/// <summary>
/// A running system for the <c>dw</c> and wire-format tests, started once for the collection: LeaseSaga, Provisioner,
/// Trust and Reaper as OS processes on their own RabbitMQ virtual host and PostgreSQL database, simulated cloud without
/// delays.
/// </summary>
public sealed class DwSystem : IAsyncLifetime
{
    public const string Pool = "ubuntu-22.04";
    public const string SizedPool = "windows-2022";

    /// <summary>A pool of its own for the image rollout, so that no other test's workers are replaced under
    /// it.</summary>
    public const string RolloutPool = "rollout";
    public const string RolloutImage = "Canonical:ubuntu-24_04-lts:server:24.04.202612010";

    readonly List<ServiceProcess> _services = [];

    public RabbitMqTestVirtualHost Broker { get; } = new();
    public PostgresTestDatabase Database { get; } = new();

    /// <summary>What <c>dw</c> is given: <c>--rabbitmq</c> of the test's virtual host.</summary>
    public string RabbitMqUri
        => $"amqp://{Uri.EscapeDataString(TestServers.RabbitMqUser)}"
            + $":{Uri.EscapeDataString(TestServers.RabbitMqPassword)}"
            + $"@{TestServers.RabbitMqHost}:5672/{Uri.EscapeDataString(Broker.Name)}";

    IReadOnlyDictionary<string, string?> Settings
        => Broker.Settings.Concat(Database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "1",
        [$"Pools:{Pool}:MaxWorkers"] = "5",
        [$"Pools:{SizedPool}:HotTarget"] = "0",
        [$"Pools:{SizedPool}:MaxWorkers"] = "2",
        [$"Pools:{RolloutPool}:HotTarget"] = "2",
        [$"Pools:{RolloutPool}:MaxWorkers"] = "4",
        [$"Pools:{RolloutPool}:RolloutSurge"] = "1",
        [$"Pools:{RolloutPool}:Image"] = RolloutImage,
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:00",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00",
    }).ToDictionary();

    public async Task InitializeAsync()
    {
        await Broker.InitializeAsync();
        await Database.InitializeAsync();
        // LeaseSaga migrates the database first; the others then start together.
        await StartAsync("LeaseSaga");
        await Task.WhenAll(StartAsync("Provisioner"), StartAsync("Trust"), StartAsync("Reaper"));
    }

    public string Diagnostics() => string.Join("\n", _services.SelectMany(s => s.Output.Split('\n'))
        .Where(l => l.StartsWith("fail:") || l.Contains("Exception")).Distinct().Take(20));

    public async Task DisposeAsync()
    {
        foreach (var service in _services)
        {
            await service.DisposeAsync();
        }

        await Database.DisposeAsync();
        await Broker.DisposeAsync();
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
