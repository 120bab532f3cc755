using DynamicWorkers.Infrastructure.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace DynamicWorkers.UnitTests.Hosting;

public sealed class HostRunnerTests
{
    sealed class FailingStart : IHostedService
    {
        public static int Starts;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Starts);
            throw new InvalidOperationException("the broker went away");
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    [Fact]
    public async Task A_host_whose_start_fails_exits_with_code_1_instead_of_aborting()
    {
        var code = await HostRunner.RunAsync(
            "failing-host",
            ["--Http:Port=0", "--Http:Host=127.0.0.1", "--Logging:LogLevel:Default=None"],
            builder => builder.Services.AddHostedService<FailingStart>());

        Assert.Equal(HostRunner.Failed, code);
        // The start itself failed, not something before it.
        Assert.Equal(1, FailingStart.Starts);
    }
}
