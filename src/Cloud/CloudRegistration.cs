using DynamicWorkers.Cloud.Azure;
using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Cloud;

public enum CloudProvider
{
    Simulated,
    Azure,
}

/// <summary>Section <c>Cloud</c>.</summary>
public sealed class CloudOptions
{
    public const string Section = "Cloud";

    public CloudProvider Provider { get; set; } = CloudProvider.Simulated;
}

/// <summary>
/// How many creates the chosen cloud takes at once per process; the Provisioner consumes that many
/// <c>ProvisionWorker</c> at a time.
/// </summary>
public sealed record CloudLimits(int ConcurrentCreates)
{
    /// <summary>The simulated cloud has no cap of its own: the consumer limit it always had.</summary>
    public static readonly CloudLimits Simulated = new(8);
}

public static class CloudRegistration
{
    /// <summary>
    /// Registers the <see cref="IWorkerCloud"/> chosen by <c>Cloud:Provider</c>. Azure reads <c>Cloud:Azure:*</c>,
    /// validated at start. The simulated cloud keeps its VMs in the shared database (<c>Database:Provider</c>,
    /// <c>ConnectionStrings:Default</c>) and creates its tables at start, beside whatever else the database holds.
    /// </summary>
    /// <param name="healthReadsOnly">
    /// true for a host that only reads VM health (the lease service): it works on while ARM is away, so ARM stays out
    /// of its <c>/readyz</c>, and it leaves the simulated cloud's tables to the services that create VMs (a read before
    /// then is "unknown")
    /// </param>
    public static IServiceCollection AddWorkerCloud(this IServiceCollection services, IConfiguration configuration,
        bool healthReadsOnly = false)
    {
        var provider = configuration.GetSection(CloudOptions.Section).GetValidated<CloudOptions>().Provider;
        if (provider == CloudProvider.Azure)
        {
            services.AddValidatedOptions<AzureCloudOptions>(configuration.GetSection(AzureCloudOptions.Section));
            // One ArmClient per process: it holds the credential's token cache and the HTTP connections.
            services.AddSingleton(sp => AzureArm.CreateClient(sp.GetRequiredService<IOptions<AzureCloudOptions>>()
                .Value));
            services.AddSingleton(sp => new CloudLimits(sp.GetRequiredService<IOptions<AzureCloudOptions>>()
                .Value.MaxConcurrentCreates));
            services.AddSingleton<IWorkerCloud, AzureWorkerCloud>();
            services.TryAddSingleton(TimeProvider.System);
            if (!healthReadsOnly)
            {
                // A singleton, so the check's 30-second memory survives between probes.
                services.AddSingleton<AzureHealthCheck>();
                services.AddHealthChecks().AddCheck<AzureHealthCheck>("azure", tags: [HttpSurface.ReadyTag],
                    timeout: TimeSpan.FromSeconds(15));
            }

            return services;
        }

        services.AddDatabaseOptions(configuration);

        services.AddValidatedOptions<SimulatedCloudOptions>(configuration.GetSection(SimulatedCloudOptions.Section));
        // Options of its own type: no clash with the product's DbContext registration.
        services.AddSingleton(sp => SimulatedCloudDbContext.CreateOptions(
            sp.GetRequiredService<IOptions<DatabaseOptions>>().Value, sp.GetService<ILoggerFactory>()));
        services.AddSingleton<SimulatedCloud>();
        services.AddSingleton(CloudLimits.Simulated);
        services.AddSingleton<IWorkerCloud>(sp => sp.GetRequiredService<SimulatedCloud>());
        if (!healthReadsOnly)
        {
            services.AddHostedService<SimulatedCloudSchemaInitializer>();
        }

        return services;
    }
}
