using System.Net.Security;
using System.Security.Cryptography;
using global::Azure.Core;
using global::Azure.Core.Pipeline;
using global::Azure.Identity;
using global::Azure.ResourceManager;

namespace DynamicWorkers.Cloud.Azure;

/// <summary>
/// Builds the one <see cref="ArmClient"/> of a process from <c>Cloud:Azure:*</c>: endpoint, credential, transport,
/// retries.
/// </summary>
public static class AzureArm
{
    /// <summary>
    /// The NIC is read through the generic resource API; a pinned version saves a provider lookup per call.
    /// </summary>
    public const string NetworkInterfaceApiVersion = "2023-04-01";

    public static ArmClient CreateClient(AzureCloudOptions options)
    {
        var handler = CreateHandler(options);
        var armOptions = new ArmClientOptions
        {
            Environment = new ArmEnvironment(options.Endpoint, options.Audience),
        };
        armOptions.SetApiVersion(new ResourceType("Microsoft.Network/networkInterfaces"), NetworkInterfaceApiVersion);
        // 429 and 5xx are retried by the SDK, after Retry-After when ARM sends one, exponentially otherwise.
        armOptions.Retry.Mode = RetryMode.Exponential;
        armOptions.Retry.MaxRetries = options.MaxRetries;
        armOptions.Retry.Delay = options.RetryDelay;
        if (handler is not null)
        {
            armOptions.Transport = new HttpClientTransport(handler);
        }

        return new ArmClient(CreateCredential(options, handler), options.SubscriptionId, armOptions);
    }

    static TokenCredential CreateCredential(AzureCloudOptions options, HttpMessageHandler? handler)
        => options.Credential switch
    {
        AzureCredentialKind.ClientSecret => new ClientSecretCredential(options.TenantId, options.ClientId,
            options.ClientSecret),
        AzureCredentialKind.ManagedIdentity => new ManagedIdentityCredential(string.IsNullOrEmpty(options.ClientId)
            ? ManagedIdentityId.SystemAssigned
            : ManagedIdentityId.FromUserAssignedClientId(options.ClientId)),
        AzureCredentialKind.Emulator => new EmulatorCredential(options.Endpoint, handler ?? new SocketsHttpHandler()),
        _ => new DefaultAzureCredential(new DefaultAzureCredentialOptions
        {
            TenantId = string.IsNullOrEmpty(options.TenantId) ? null : options.TenantId,
        }),
    };

    /// <summary>
    /// Only when a certificate thumbprint is pinned (the emulator's self-signed one): the normal chain check
    /// still passes every properly trusted certificate, and the pinned one is accepted besides.
    /// </summary>
    static SocketsHttpHandler? CreateHandler(AzureCloudOptions options)
    {
        if (string.IsNullOrEmpty(options.TrustedCertificateThumbprint))
        {
            return null;
        }

        var pinned = options.TrustedCertificateThumbprint;
        return new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                    errors == SslPolicyErrors.None
                    || (certificate is not null
                        && (string.Equals(certificate.GetCertHashString(), pinned, StringComparison.OrdinalIgnoreCase)
                            || string.Equals(certificate.GetCertHashString(HashAlgorithmName.SHA256), pinned,
                                StringComparison.OrdinalIgnoreCase))),
            },
        };
    }
}
