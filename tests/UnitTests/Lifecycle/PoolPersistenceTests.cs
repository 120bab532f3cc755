using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>The pool's ledger is saved whole on every update, although the saga changes it in place (no copy to compare against).</summary>
public sealed class PoolPersistenceTests
{
    [Fact]
    public async Task A_book_changed_in_place_is_saved_with_the_pool()
    {
        await using var connection = new SqliteConnection("Data Source=:memory:");
        await connection.OpenAsync();
        var options = new DbContextOptionsBuilder<DynamicWorkersDbContext>().UseSqlite(connection).Options;
        var id = PoolIds.For("linux");
        await using (var db = new DynamicWorkersDbContext(options))
        {
            await db.Database.EnsureCreatedAsync();
            db.Add(new PoolState { CorrelationId = id, Name = "linux", CurrentState = "Active" });
            await db.SaveChangesAsync();
        }

        var worker = Guid.NewGuid();
        await using (var db = new DynamicWorkersDbContext(options))
        {
            var pool = await db.Set<PoolState>().AsTracking().SingleAsync(p => p.CorrelationId == id);
            pool.Book.Started(worker, DateTimeOffset.UtcNow);
            await db.SaveChangesAsync();
            pool.Book.BecameReady(worker);
            await db.SaveChangesAsync();
        }

        await using (var db = new DynamicWorkersDbContext(options))
        {
            var pool = await db.Set<PoolState>().AsNoTracking().SingleAsync(p => p.CorrelationId == id);
            Assert.Equal([worker], pool.Book.Ready);
            Assert.Empty(pool.Book.Provisioning);
        }
    }
}
