namespace DynamicWorkers.Infrastructure.Hosting;

/// <summary>
/// A start-up step that <see cref="HostRunner"/> begins as soon as the host is built and its configuration validated,
/// so that its waits and EF Core's model building overlap MassTransit building the bus; the step's hosted service then
/// awaits it when the host starts. A host that nobody begins early starts it then.
/// </summary>
public interface IEarlyStartupStep
{
    /// <summary>
    /// Starts the step; <paramref name="cancellationToken"/> stops it if the host never comes to wait for it.
    /// </summary>
    void Begin(CancellationToken cancellationToken);
}
