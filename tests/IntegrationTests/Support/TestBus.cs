using DynamicWorkers.Infrastructure.Messaging;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>The test's own side of the bus: a host with the product's bus setup, the given settings and
/// endpoints.</summary>
public static class TestBus
{
    public static async Task<IHost> StartAsync(
        IEnumerable<KeyValuePair<string, string?>> settings,
        Action<IBusRegistrationConfigurator> endpoints,
        Action<IServiceCollection, IConfiguration>? services = null,
        bool hostScheduler = false)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection(settings);
        services?.Invoke(builder.Services, builder.Configuration);
        builder.Services.AddDynamicWorkersBus(builder.Configuration, endpoints, hostScheduler);
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }
}
