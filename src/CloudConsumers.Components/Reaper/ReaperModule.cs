using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Configuration;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace DynamicWorkers.Reaper;

/// <summary>
/// What the reaper adds to a host (its own, or Standalone): the <c>DeprovisionWorker</c> endpoint and the sweep.
/// </summary>
public static class ReaperModule
{
    public static IServiceCollection AddReaperServices(this IServiceCollection services, IConfiguration configuration)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddValidatedOptions<ReaperOptions>(configuration.GetSection(ReaperOptions.Section));
        services.AddHostedService<ReaperSweep>();
        return services;
    }

    public static void AddReaperEndpoints(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<DeprovisionWorkerConsumer, DeprovisionWorkerConsumerDefinition>();
        bus.AddRequestClient<GetWorkers>(RequestTimeout.After(s: 30));
    }
}
