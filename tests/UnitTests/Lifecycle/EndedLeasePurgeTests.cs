using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.Simulator;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>Retention on SQLite (Standalone's database): only leases that ended before the cutoff go, batch after
/// batch.</summary>
public sealed class EndedLeasePurgeTests : IDisposable
{
    readonly string _file = Path.Combine(Path.GetTempPath(), $"dw-purge-{Guid.NewGuid():N}.db");
    readonly VirtualClock _clock = new(LifecycleBed.Start);

    [Fact]
    public async Task Leases_ended_before_the_retention_go_in_batches_and_open_or_recent_ones_stay()
    {
        await using var services =
            Services(new RetentionOptions { EndedLeases = TimeSpan.FromDays(7), PurgeBatch = 2 });
        await using (var scope = services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>();
            await db.Database.MigrateAsync();
            var now = _clock.GetUtcNow();
            db.AddRange(Enumerable.Range(1, 5)
                .Select(i => Lease("Released", now - TimeSpan.FromDays(8) - TimeSpan.FromMinutes(i))));
            db.AddRange(
                Lease("Rejected", now - TimeSpan.FromDays(7) - TimeSpan.FromSeconds(1)),
                Lease("Revoked", now - TimeSpan.FromDays(6)),
                Lease("Granted", null),
                Lease("WaitingForWorker", null));
            await db.SaveChangesAsync();
        }

        var purge = ActivatorUtilities.CreateInstance<EndedLeasePurge>(services);

        Assert.Equal(6, await purge.PurgeAsync(CancellationToken.None));
        await using (var scope = services.CreateAsyncScope())
        {
            var left = await scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>().Set<LeaseState>()
                .Select(l => l.CurrentState).ToListAsync();
            Assert.Equal(["Granted", "Revoked", "WaitingForWorker"], left.Order());
        }

        Assert.Equal(0, await purge.PurgeAsync(CancellationToken.None));
    }

    static LeaseState Lease(string state, DateTimeOffset? endedAt) => new()
    {
        CorrelationId = Guid.NewGuid(),
        CurrentState = state,
        InstanceId = "instance-1",
        ServerThumbprint = new string('a', 40),
        Pool = LifecycleBed.Pool,
        ReceivedAt = endedAt ?? DateTimeOffset.UnixEpoch,
        EndedAt = endedAt,
    };

    ServiceProvider Services(RetentionOptions retention)
    {
        var services = new ServiceCollection();
        services.AddSingleton<TimeProvider>(_clock);
        services.AddLogging();
        services.AddScoped<DynamicWorkersDbContext>(_ => new SqliteDynamicWorkersDbContext(
            new DbContextOptionsBuilder<DynamicWorkersDbContext>().UseSqlite($"Data Source={_file}").Options));
        services.AddSingleton<IOptionsMonitor<RetentionOptions>>(new StaticMonitor<RetentionOptions>(retention));
        return services.BuildServiceProvider();
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        File.Delete(_file);
    }

    sealed class StaticMonitor<T>(T value) : IOptionsMonitor<T>
    {
        public T CurrentValue => value;

        public T Get(string? name) => value;

        public IDisposable? OnChange(Action<T, string?> listener) => null;
    }
}
