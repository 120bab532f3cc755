using Microsoft.Extensions.Hosting;

namespace DynamicWorkers.Infrastructure.Hosting;

public static class HostLifetime
{
    /// <summary>
    /// Completes once every hosted service has started, the bus included (they start together, see
    /// <see cref="HostRunner"/>): a background service that publishes waits for it.
    /// </summary>
    public static async Task WhenStartedAsync(this IHostApplicationLifetime lifetime,
        CancellationToken cancellationToken)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
        await using (cancellationToken.Register(() => started.TrySetCanceled(cancellationToken)))
        {
            await started.Task;
        }
    }
}
