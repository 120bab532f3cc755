using Microsoft.Extensions.Hosting;

namespace DynamicWorkers.Cloud.Simulated;

/// <summary>Creates the simulated cloud's tables before the bus starts delivering commands that need them.</summary>
sealed class SimulatedCloudSchemaInitializer(SimulatedCloud cloud) : IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken) => cloud.EnsureSchemaAsync(cancellationToken);

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
