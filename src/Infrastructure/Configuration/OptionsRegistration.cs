using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.Infrastructure.Persistence;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Infrastructure.Configuration;

public static class OptionsRegistration
{
    /// <summary>
    /// Binds a section, validates its data annotations and fails start-up (not first use) when invalid.
    /// </summary>
    public static OptionsBuilder<T> AddValidatedOptions<T>(this IServiceCollection services, IConfiguration section)
        where T : class
    {
        return services.AddOptions<T>()
            .Bind(section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
    }

    /// <summary>The root <c>Transport</c> key.</summary>
    public static OptionsBuilder<TransportOptions> AddTransportOptions(this IServiceCollection services,
        IConfiguration configuration)
        => services.AddValidatedOptions<TransportOptions>(configuration);

    /// <summary>
    /// <c>Database:Provider</c> and <c>ConnectionStrings:Default</c>. Registered once per container: several
    /// modules of one host (Standalone) need it, and a second registration would repeat every failure line.
    /// </summary>
    public static OptionsBuilder<DatabaseOptions> AddDatabaseOptions(this IServiceCollection services,
        IConfiguration configuration)
    {
        if (services.Any(d => d.ServiceType == typeof(IValidateOptions<DatabaseOptions>)))
        {
            return services.AddOptions<DatabaseOptions>();
        }

        // Every host that uses the database is ready only while it answers.
        services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database", tags: [HttpSurface.ReadyTag],
            timeout: TimeSpan.FromSeconds(5));
        return services.AddValidatedOptions<DatabaseOptions>(configuration.GetSection(DatabaseOptions.Section))
            .Configure(o => o.ConnectionString = configuration.GetConnectionString("Default") ?? "");
    }

    /// <summary>Reads validated options while the container is still being built (e.g. to pick a provider).</summary>
    public static T GetValidated<T>(this IConfiguration section, Action<T>? configure = null)
        where T : class, new()
    {
        var options = section.Get<T>() ?? new T();
        configure?.Invoke(options);
        var result = new DataAnnotationValidateOptions<T>(null).Validate(null, options);
        if (result.Failed)
        {
            throw new OptionsValidationException(typeof(T).Name, typeof(T), result.Failures);
        }

        return options;
    }
}
