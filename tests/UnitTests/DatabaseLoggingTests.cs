using System.Data.Common;
using DynamicWorkers.Cloud;
using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.UnitTests.Lifecycle;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static DynamicWorkers.UnitTests.InMemorySqlite;

namespace DynamicWorkers.UnitTests;

public sealed class DatabaseLoggingTests
{
    [Fact]
    public async Task The_product_s_and_the_simulated_cloud_s_contexts_log_through_the_host_s_loggers()
    {
        var capture = new LogCapture();
        var configuration = InMemorySqlite.Settings();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddProvider(capture));
        services.AddDynamicWorkersDatabase<RowsContext>(configuration, ContextPool<RowsContext>.Of<RowsContext>);
        services.AddWorkerCloud(configuration);
        await using var provider = services.BuildServiceProvider();
        await using var scope = provider.CreateAsyncScope();
        DbContext[] contexts =
        [
            scope.ServiceProvider.GetRequiredService<RowsContext>(),
            new SimulatedCloudDbContext(provider.GetRequiredService<DbContextOptions<SimulatedCloudDbContext>>()),
        ];

        foreach (var db in contexts)
        {
            await Assert.ThrowsAnyAsync<DbException>(
                () => db.Database.SqlQueryRaw<int>("SELECT 1 AS \"Value\" FROM no_such_table").ToListAsync());
        }

        // EF Core logs the failed query itself, with its exception, as it would a lost connection: an operator sees it.
        var failed = capture.Records.Where(
            r => r.Category == "Microsoft.EntityFrameworkCore.Query" && r.Level == LogLevel.Error);
        Assert.Equal(2, failed.Count(r => r.Message.Contains("no_such_table", StringComparison.Ordinal)));
        await contexts[1].DisposeAsync();
    }

    [Fact]
    public async Task A_duplicate_key_insert_the_endpoints_retry_is_logged_at_debug_and_not_as_an_error()
    {
        var capture = new LogCapture();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddProvider(capture).SetMinimumLevel(LogLevel.Debug));
        services.AddDynamicWorkersDatabase<RowsContext>(InMemorySqlite.Settings(),
            ContextPool<RowsContext>.Of<RowsContext>);
        await using var provider = services.BuildServiceProvider();
        await using var scope = provider.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<RowsContext>();
        await db.Database.OpenConnectionAsync(); // the in-memory database lives as long as its connection
        await db.Database.EnsureCreatedAsync();
        db.Add(new Row { Id = 1 });
        await db.SaveChangesAsync();
        db.ChangeTracker.Clear();

        db.Add(new Row { Id = 1 });
        var race = await Assert.ThrowsAsync<DbUpdateException>(() => db.SaveChangesAsync());

        Assert.True(DbConflicts.IsConflict(race));
        var efCore = capture.Records.Where(
            r => r.Category.StartsWith("Microsoft.EntityFrameworkCore", StringComparison.Ordinal)).ToList();
        Assert.DoesNotContain(efCore, r => r.Level >= LogLevel.Warning);
        Assert.Contains(efCore,
            r => r.Category == "Microsoft.EntityFrameworkCore.Database.Command" && r.Level == LogLevel.Debug
            && r.Message.Contains("Failed executing DbCommand", StringComparison.Ordinal));
        Assert.Contains(efCore, r => r.Category == "Microsoft.EntityFrameworkCore.Update" && r.Level == LogLevel.Debug);
    }
}
