using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.LeaseSaga.Persistence;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace DynamicWorkers.LeaseSaga;

/// <summary>What the lease-saga service adds to a host: its database and its endpoints. Standalone uses it too.</summary>
public static class LeaseSagaModule
{
    public static IServiceCollection AddLeaseSagaServices(this IServiceCollection services, IConfiguration configuration)
        => services.AddDynamicWorkersDatabase<DynamicWorkersDbContext>(configuration, DynamicWorkersDbContext.Create);

    public static void AddLeaseSagaEndpoints(this IBusRegistrationConfigurator bus)
    {
    }
}
