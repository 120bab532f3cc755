using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace DynamicWorkers.IntegrationTests.Cloud;

/// <summary>
/// Everything as separate processes: the ARM emulator on its own, and Provisioner, Trust and Reaper with
/// <c>Cloud:Provider = Azure</c> pointed at it. The test reads the emulator's state over HTTPS, as an operator could.
/// </summary>
public sealed partial class ArmEmulatorProcessTests(RabbitMqTestVirtualHost broker)
    : IClassFixture<RabbitMqTestVirtualHost>, IAsyncLifetime
{
    static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    readonly List<ServiceProcess> _services = [];
    ServiceProcess _emulator = null!;
    HttpClient _state = null!;
    IHost _client = null!;

    CloudEvents Events => _client.Services.GetRequiredService<CloudEvents>();

    public async Task InitializeAsync()
    {
        _emulator = ServiceProcess.StartFrom("tests", "ArmEmulator", []);
        await Eventually.True(() => Listening().Success || _emulator.HasExited, Deadline, "the emulator to listen",
            () => _emulator.Output);
        var endpoint = new Uri(Listening().Groups["uri"].Value);
        var thumbprint = Listening().Groups["thumbprint"].Value;
        _state = new HttpClient(new SocketsHttpHandler
        {
            SslOptions = { RemoteCertificateValidationCallback =
                (_, certificate, _, _) => certificate?.GetCertHashString(HashAlgorithmName.SHA256) == thumbprint },
        }) { BaseAddress = endpoint };

        var settings = broker.Settings.Concat(ArmEmulatorFixture.SettingsFor(endpoint, thumbprint)).ToList();
        foreach (var project in new[] { "Provisioner", "Trust", "Reaper" })
        {
            _services.Add(ServiceProcess.Start(project, settings));
        }

        await Task.WhenAll(_services.Select(s => s.WaitUntilStartedAsync(Deadline)));
        _client = await TestBus.StartAsync(
            broker.Settings,
            bus => bus.AddConsumer<CloudEventsConsumer>().Endpoint(e => e.Name = "cloud-events"),
            (services, _) => services.AddSingleton<CloudEvents>());
    }

    public async Task DisposeAsync()
    {
        foreach (var service in _services.Append(_emulator))
        {
            await service.DisposeAsync();
        }

        _state.Dispose();
        await _client.StopAsync();
        _client.Dispose();
    }

    [Fact]
    public async Task A_worker_is_provisioned_trusted_and_deprovisioned_on_the_emulator_by_three_processes()
    {
        var workerId = Guid.NewGuid();
        var instanceThumbprint = new string('D', 64);
        using (var http = new HttpClient())
        {
            // Ready only once the credential works and the resource group can be read.
            var ready = await http.GetStringAsync(new Uri(_services[0].HttpAddress, "/readyz"));
            Assert.Equal("Healthy", (string?)JsonNode.Parse(ready)!["checks"]!["azure"]!["status"]);
        }

        await SendAsync("provision-worker", new ProvisionWorker(workerId, "ubuntu-22.04",
            "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest", "Standard_D2s_v5"));
        var provisioned = await EventAsync<WorkerProvisioned>(e => e.WorkerId == workerId);
        Assert.Matches(@"^10\.0\.\d{1,3}\.\d{1,3}:10933$", provisioned.Address);
        Assert.Equal("Succeeded", (string?)(await VmAsync(workerId))["provisioningState"]);

        await SendAsync("trust-worker", new TrustWorker(workerId, Guid.NewGuid(), "instance-evil", "$(reboot)"));
        Assert.Equal("InvalidThumbprint", (await EventAsync<WorkerTrustFailed>(e => e.WorkerId == workerId)).Reason);

        await SendAsync("trust-worker", new TrustWorker(workerId, Guid.NewGuid(), "instance-1", instanceThumbprint));
        var trusted = await EventAsync<WorkerTrusted>(e => e.WorkerId == workerId);
        Assert.Matches("^[0-9A-F]{40}$", trusted.AgentThumbprint);
        Assert.Equal([instanceThumbprint],
            (await VmAsync(workerId))["trustedThumbprints"]!.AsArray().Select(t => (string?)t));

        await SendAsync("deprovision-worker", new DeprovisionWorker(workerId, "test"));
        await EventAsync<WorkerDeprovisioned>(e => e.WorkerId == workerId);
        Assert.True((bool?)(await VmAsync(workerId))["deleted"]);
        Assert.Equal(0, (int?)(await StateAsync())["networkInterfaces"]);
    }

    Match Listening() => ListeningLine().Match(_emulator.Output);

    async Task<JsonObject> StateAsync() => (await _state.GetFromJsonAsync<JsonObject>("emulator/state"))!;

    async Task<JsonObject> VmAsync(Guid workerId)
        => (await StateAsync())["vms"]!.AsArray()
            .Single(v => (string?)v!["workerId"] == workerId.ToString())!.AsObject();

    async Task SendAsync<T>(string queue, T message) where T : class
    {
        var endpoint = await _client.Services.GetRequiredService<IBus>().GetSendEndpoint(CloudQueues.Address(queue));
        await endpoint.Send(message);
    }

    async Task<T> EventAsync<T>(Func<T, bool> match) where T : class
    {
        await Eventually.True(() => Events.Find(match) is not null, TimeSpan.FromSeconds(30), $"a {typeof(T).Name}",
            () => $"events: {string.Join(", ", Events.All)}\n"
                + string.Join("\n", _services.Append(_emulator).Select(s => s.Output)));
        return Events.Find(match)!;
    }

    [GeneratedRegex(@"listening on (?<uri>https://\S+) certificate-sha256 (?<thumbprint>[0-9A-F]{64})")]
    private static partial Regex ListeningLine();
}
