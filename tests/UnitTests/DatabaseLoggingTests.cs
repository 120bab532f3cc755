using System.Data.Common;
using DynamicWorkers.Cloud;
using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.UnitTests.Lifecycle;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.UnitTests;

public sealed class DatabaseLoggingTests
{
    sealed class EmptyContext(DbContextOptions<EmptyContext> options) : DbContext(options);

    [Fact]
    public async Task The_product_s_and_the_simulated_cloud_s_contexts_log_through_the_host_s_loggers()
    {
        var capture = new LogCapture();
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Database:Provider"] = "Sqlite",
            ["ConnectionStrings:Default"] = "Data Source=:memory:",
        }).Build();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddProvider(capture));
        services.AddDynamicWorkersDatabase<EmptyContext>(configuration, ContextPool<EmptyContext>.Of<EmptyContext>);
        services.AddWorkerCloud(configuration);
        await using var provider = services.BuildServiceProvider();
        await using var scope = provider.CreateAsyncScope();
        DbContext[] contexts =
        [
            scope.ServiceProvider.GetRequiredService<EmptyContext>(),
            new SimulatedCloudDbContext(provider.GetRequiredService<DbContextOptions<SimulatedCloudDbContext>>()),
        ];

        foreach (var db in contexts)
        {
            await Assert.ThrowsAnyAsync<DbException>(() => db.Database.ExecuteSqlRawAsync("SELECT * FROM no_such_table"));
        }

        // EF Core logs the failed command itself, as it would a lost connection or a bad migration: an operator sees it.
        var failed = capture.Records.Where(r => r.Category == "Microsoft.EntityFrameworkCore.Database.Command" && r.Level == LogLevel.Error);
        Assert.Equal(2, failed.Count(r => r.Message.Contains("no_such_table", StringComparison.Ordinal)));
        await contexts[1].DisposeAsync();
    }
}
