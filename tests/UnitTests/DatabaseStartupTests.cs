using System.Net.Sockets;
using DynamicWorkers.Infrastructure.Persistence;
using Microsoft.Extensions.Logging.Abstractions;

namespace DynamicWorkers.UnitTests;

public sealed class DatabaseStartupTests
{
    [Fact]
    public async Task A_start_up_step_waits_while_the_database_is_unreachable()
    {
        var attempts = 0;

        await DatabaseStartup.WhenReachableAsync(
            _ => ++attempts < 3 ? throw new InvalidOperationException("transient",
                new SocketException((int)SocketError.ConnectionRefused)) : Task.CompletedTask,
            NullLogger.Instance,
            CancellationToken.None);

        Assert.Equal(3, attempts);
    }

    [Fact]
    public async Task Any_other_failure_stops_start_up_at_once()
    {
        var attempts = 0;

        await Assert.ThrowsAsync<InvalidOperationException>(() => DatabaseStartup.WhenReachableAsync(
            _ =>
            {
                attempts++;
                throw new InvalidOperationException("the migration is broken");
            },
            NullLogger.Instance,
            CancellationToken.None));

        Assert.Equal(1, attempts);
    }
}
