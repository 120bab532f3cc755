using DynamicWorkers.ArmEmulator;
using DynamicWorkers.Cloud.Azure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>The ARM emulator in this test process, on its own loopback port, for one test class.</summary>
public sealed class ArmEmulatorFixture : IAsyncLifetime
{
    public const string SubscriptionId = "00000000-0000-0000-0000-00000000d0d0";
    public const string ResourceGroup = "dw-workers";
    public const string SubnetId = $"/subscriptions/{SubscriptionId}/resourceGroups/dw-network/providers"
        + $"/Microsoft.Network/virtualNetworks/dw-vnet/subnets/workers";

    public ArmEmulatorServer Server { get; private set; } = null!;

    /// <summary>
    /// The <c>Cloud:*</c> settings of a host pointed at this emulator, exactly as an operator would set them
    /// (the thumbprint pin and the emulator credential are the only test-only parts).
    /// </summary>
    public IReadOnlyDictionary<string, string?> Settings => SettingsFor(Server.Uri, Server.CertificateThumbprint);

    /// <summary>The same for an emulator anywhere (e.g. running as its own process).</summary>
    public static IReadOnlyDictionary<string, string?> SettingsFor(Uri endpoint, string certificateThumbprint)
        => new Dictionary<string, string?>
    {
        ["Cloud:Provider"] = "Azure",
        ["Cloud:Azure:SubscriptionId"] = SubscriptionId,
        ["Cloud:Azure:ResourceGroup"] = ResourceGroup,
        ["Cloud:Azure:Location"] = "westeurope",
        ["Cloud:Azure:SubnetId"] = SubnetId,
        ["Cloud:Azure:AdminUsername"] = "dwadmin",
        ["Cloud:Azure:AdminPassword"] = "Emulator-Only-Passw0rd!",
        ["Cloud:Azure:Credential"] = "Emulator",
        ["Cloud:Azure:Endpoint"] = endpoint.ToString(),
        ["Cloud:Azure:TrustedCertificateThumbprint"] = certificateThumbprint,
    };

    /// <summary>The adapter in this process, built from <see cref="Settings"/> plus overrides, through the real
    /// SDK.</summary>
    public AzureWorkerCloud CreateCloud(IReadOnlyDictionary<string, string?>? overrides = null)
    {
        var options = CreateOptions(overrides);
        return new AzureWorkerCloud(AzureArm.CreateClient(options), Options.Create(options),
            NullLogger<AzureWorkerCloud>.Instance);
    }

    /// <summary><c>Cloud:Azure</c> as a host would bind and validate it from <see cref="Settings"/> plus
    /// overrides.</summary>
    public AzureCloudOptions CreateOptions(IReadOnlyDictionary<string, string?>? overrides = null)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(Settings)
            .AddInMemoryCollection(overrides ?? new Dictionary<string, string?>()).Build();
        var options = configuration.GetSection(AzureCloudOptions.Section).Get<AzureCloudOptions>()!;
        var results = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
        Assert.True(
            System.ComponentModel.DataAnnotations.Validator.TryValidateObject(options, new(options), results,
                validateAllProperties: true),
            string.Join("; ", results.Select(r => r.ErrorMessage)));
        return options;
    }

    public async Task InitializeAsync() => Server = await ArmEmulatorServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}
