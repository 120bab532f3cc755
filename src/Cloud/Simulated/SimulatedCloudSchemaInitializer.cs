using DynamicWorkers.Infrastructure.Persistence;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.Cloud.Simulated;

/// <summary>Creates the simulated cloud's tables before the bus starts delivering commands that need them.</summary>
sealed class SimulatedCloudSchemaInitializer(SimulatedCloud cloud, ILogger<SimulatedCloudSchemaInitializer> logger)
    : IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken)
        => DatabaseStartup.WhenReachableAsync(cloud.EnsureSchemaAsync, logger, cancellationToken);

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
