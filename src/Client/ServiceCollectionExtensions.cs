using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Client;

public static class ServiceCollectionExtensions
{
    /// <summary>
    /// For apps that already run a MassTransit bus: registers <see cref="DynamicWorkersClient"/> over that bus's
    /// <c>IBus</c>. The bus needs nothing else (responses come back on its own response queue).
    /// </summary>
    public static IServiceCollection AddDynamicWorkersClient(this IServiceCollection services,
        Action<DynamicWorkersClientOptions>? configure = null)
    {
        var options = services.AddOptions<DynamicWorkersClientOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        services.TryAddSingleton(sp => new DynamicWorkersClient(
            sp.GetRequiredService<MassTransit.IBus>(),
            sp.GetRequiredService<IOptions<DynamicWorkersClientOptions>>().Value));
        return services;
    }
}
