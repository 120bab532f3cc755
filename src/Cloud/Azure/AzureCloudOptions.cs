using System.ComponentModel.DataAnnotations;
using DynamicWorkers.Contracts;

namespace DynamicWorkers.Cloud.Azure;

public enum AzureCredentialKind
{
    /// <summary>
    /// <c>DefaultAzureCredential</c>: environment, workload identity, managed identity, then developer logins.
    /// </summary>
    Default,

    /// <summary>A service principal: <c>TenantId</c>, <c>ClientId</c>, <c>ClientSecret</c>.</summary>
    ClientSecret,

    /// <summary>The host's managed identity: system-assigned, or user-assigned when <c>ClientId</c> is set.</summary>
    ManagedIdentity,

    /// <summary>
    /// Tests only: a token from the ARM emulator's own token endpoint (<c>{Endpoint}/emulator/token</c>).
    /// </summary>
    Emulator,
}

public enum WorkerOsType
{
    Linux,
    Windows,
}

/// <summary>Per pool (a pool is one image): <c>Cloud:Azure:Pools:&lt;pool&gt;:*</c>.</summary>
public sealed class AzurePoolOptions
{
    /// <summary>
    /// Decides the Run Command shell and the OS profile; unset, Windows when the image's publisher says Windows.
    /// </summary>
    public WorkerOsType? OsType { get; set; }

    /// <summary>
    /// The trust script template; <c>{thumbprint}</c> is replaced by the validated instance thumbprint. Unset: the
    /// Tentacle-style default.
    /// </summary>
    public string? TrustScript { get; set; }
}

/// <summary>
/// Section <c>Cloud:Azure</c>: where worker VMs go and how the service signs in to Azure Resource Manager.
/// </summary>
public sealed class AzureCloudOptions : IValidatableObject
{
    public const string Section = "Cloud:Azure";

    [Required(ErrorMessage = "Cloud:Azure:SubscriptionId is required")]
    public string SubscriptionId { get; set; } = "";

    [Required(ErrorMessage = "Cloud:Azure:ResourceGroup is required")]
    public string ResourceGroup { get; set; } = "";

    [Required(ErrorMessage = "Cloud:Azure:Location is required")]
    public string Location { get; set; } = "";

    /// <summary>Full resource id of the subnet every worker NIC joins.</summary>
    [Required(ErrorMessage = "Cloud:Azure:SubnetId is required")]
    public string SubnetId { get; set; } = "";

    [Required(ErrorMessage = "Cloud:Azure:AdminUsername is required")]
    public string AdminUsername { get; set; } = "dwadmin";

    /// <summary>Required for Windows pools; for Linux pools either this or <see cref="SshPublicKey"/>.</summary>
    public string? AdminPassword { get; set; }

    /// <summary>Linux pools: the admin's SSH public key (password sign-in is then disabled).</summary>
    public string? SshPublicKey { get; set; }

    /// <summary>
    /// Value of the <c>dw-managed-by</c> tag: the orphan sweep only ever touches VMs carrying this exact value.
    /// </summary>
    [Required(ErrorMessage = "Cloud:Azure:ManagedBy is required")]
    [RegularExpression("^[a-z0-9][a-z0-9-]{0,62}$",
        ErrorMessage = "Cloud:Azure:ManagedBy is lower-case letters, digits and '-'")]
    public string ManagedBy { get; set; } = "dynamic-workers";

    /// <summary>The port the worker's agent listens on, appended to its private address.</summary>
    [Range(1, 65535)]
    public int AgentPort { get; set; } = 10933;

    public AzureCredentialKind Credential { get; set; } = AzureCredentialKind.Default;

    public string? TenantId { get; set; }

    public string? ClientId { get; set; }

    public string? ClientSecret { get; set; }

    /// <summary>Azure Resource Manager's address; change it only for a sovereign cloud or the test emulator.</summary>
    [Required]
    public Uri Endpoint { get; set; } = new("https://management.azure.com/");

    /// <summary>The token audience (no trailing slash: the SDK appends <c>/.default</c>).</summary>
    [Required(AllowEmptyStrings = false)]
    public string Audience { get; set; } = "https://management.azure.com";

    /// <summary>
    /// Tests only: also accept a server certificate with this SHA-1 or SHA-256 thumbprint (the emulator's
    /// self-signed one). Never set against the real Azure, whose certificates the machine already trusts.
    /// </summary>
    public string? TrustedCertificateThumbprint { get; set; }

    /// <summary>
    /// Create calls in flight at once from this process (VM creates count against the subscription's ARM write limits).
    /// </summary>
    [Range(1, 1000)]
    public int MaxConcurrentCreates { get; set; } = 10;

    /// <summary>
    /// A create still not finished after this is given up (<c>ProvisioningTimedOut</c>), so a stuck VM cannot hold a
    /// create slot forever.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan CreateTimeout { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>A trust Run Command still not finished after this is given up (<c>TrustTimedOut</c>).</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan RunCommandTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// SDK retries of a throttled (429, honouring <c>Retry-After</c>) or failed (5xx, network) request.
    /// </summary>
    [Range(0, 20)]
    public int MaxRetries { get; set; } = 3;

    /// <summary>First back-off of the SDK's exponential retry when the response has no <c>Retry-After</c>.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:05:00")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(0.8);

    public Dictionary<string, AzurePoolOptions> Pools { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (SubscriptionId.Length > 0 && !Guid.TryParse(SubscriptionId, out _))
        {
            yield return new ValidationResult("Cloud:Azure:SubscriptionId must be a subscription GUID");
        }

        if (SubnetId.Length > 0 && !SubnetId.StartsWith("/subscriptions/", StringComparison.OrdinalIgnoreCase))
        {
            yield return new ValidationResult(
                "Cloud:Azure:SubnetId must be a subnet's full resource id (/subscriptions/.../subnets/...)");
        }

        if (string.IsNullOrEmpty(AdminPassword) && string.IsNullOrEmpty(SshPublicKey))
        {
            yield return new ValidationResult("Cloud:Azure:AdminPassword or Cloud:Azure:SshPublicKey is required");
        }

        if (Endpoint is { IsAbsoluteUri: true } && Endpoint.Scheme != Uri.UriSchemeHttps)
        {
            yield return new ValidationResult(
                "Cloud:Azure:Endpoint must be https (the SDK refuses to send tokens over http)");
        }

        if (Audience.EndsWith('/'))
        {
            yield return new ValidationResult("Cloud:Azure:Audience must not end with '/'");
        }

        if (TrustedCertificateThumbprint is { Length: > 0 } pinned && !Thumbprint.IsValid(pinned))
        {
            yield return new ValidationResult("Cloud:Azure:TrustedCertificateThumbprint must be 40 or 64 hex digits");
        }

        if (Credential == AzureCredentialKind.ClientSecret
            && (string.IsNullOrEmpty(TenantId) || string.IsNullOrEmpty(ClientId) || string.IsNullOrEmpty(ClientSecret)))
        {
            yield return new ValidationResult(
                "Cloud:Azure:Credential ClientSecret needs Cloud:Azure:TenantId, :ClientId and :ClientSecret");
        }

        if (Credential == AzureCredentialKind.Emulator
            && Endpoint.Host.EndsWith("management.azure.com", StringComparison.OrdinalIgnoreCase))
        {
            yield return new ValidationResult(
                "Cloud:Azure:Credential Emulator is for the test emulator only: set Cloud:Azure:Endpoint to it");
        }
    }
}
