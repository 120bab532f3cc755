using System.Data.Common;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// Start-up steps that need the database wait for it: a process started while the database restarts (or
/// starts up alongside it) would otherwise exit at once.
/// </summary>
public static class DatabaseStartup
{
    static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);

    public static async Task WhenReachableAsync(Func<CancellationToken, Task> step, ILogger logger,
        CancellationToken cancellationToken)
    {
        var until = DateTime.UtcNow + Patience;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await step(cancellationToken);
                return;
            }
            catch (Exception e) when (IsUnreachable(e) && DateTime.UtcNow < until
                && !cancellationToken.IsCancellationRequested)
            {
                logger.LogWarning("Database not reachable at start-up (attempt {Attempt}): {Error}; trying again",
                    attempt, e.GetBaseException().Message);
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            }
        }
    }

    /// <summary>
    /// A transient database error or a refused connection anywhere in the chain; not a bad schema or bad credentials.
    /// </summary>
    public static bool IsUnreachable(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is DbException { IsTransient: true } or SocketException or TimeoutException)
            {
                return true;
            }
        }

        return false;
    }
}
