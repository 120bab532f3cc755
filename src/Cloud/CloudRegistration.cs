using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Infrastructure.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
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

public static class CloudRegistration
{
    /// <summary>
    /// Registers the <see cref="IWorkerCloud"/> chosen by <c>Cloud:Provider</c>. The simulated cloud keeps its
    /// VMs in the shared database (<c>Database:Provider</c>, <c>ConnectionStrings:Default</c>) and creates its
    /// tables at start, beside whatever else the database holds.
    /// </summary>
    public static IServiceCollection AddWorkerCloud(this IServiceCollection services, IConfiguration configuration)
    {
        var provider = configuration.GetSection(CloudOptions.Section).GetValidated<CloudOptions>().Provider;
        if (provider != CloudProvider.Simulated)
        {
            // Stops start-up with one line (HostRunner prints it) instead of failing at the first command.
            throw new OptionsValidationException(
                CloudOptions.Section, typeof(CloudOptions), [$"Cloud:Provider {provider} is not available yet: use Simulated"]);
        }

        services.AddDatabaseOptions(configuration);

        services.AddValidatedOptions<SimulatedCloudOptions>(configuration.GetSection(SimulatedCloudOptions.Section));
        // Options of its own type: no clash with the product's DbContext registration.
        services.AddSingleton(sp => SimulatedCloudDbContext.CreateOptions(sp.GetRequiredService<IOptions<DatabaseOptions>>().Value));
        services.AddSingleton<SimulatedCloud>();
        services.AddSingleton<IWorkerCloud>(sp => sp.GetRequiredService<SimulatedCloud>());
        services.AddHostedService<SimulatedCloudSchemaInitializer>();
        return services;
    }
}
