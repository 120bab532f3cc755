using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Npgsql;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>
/// A lease that takes a hot worker takes no lock but the worker's row, as separate processes on the real broker and
/// PostgreSQL: with the pool's row locked by another transaction (as a worker turning ready or the pool keeper holds
/// it), the lease is still granted; its replacement worker starts once the lock is let go.
/// </summary>
public sealed class HotClaimTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";
    const string Instance = "instance-hot";
    const string ReadyWorkers = "SELECT count(*) FROM workers WHERE \"CurrentState\" = 'Ready'";
    static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    LifecycleCluster _cluster = null!;

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "2",
        [$"Pools:{Pool}:MaxWorkers"] = "4",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.100",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.100",
    }).ToDictionary();

    public async Task InitializeAsync()
        => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString,
            ["LeaseSaga", "Provisioner", "Trust"]);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task A_hot_worker_is_granted_while_another_transaction_holds_the_pool_s_lock()
    {
        await Eventually.True(async () => await _cluster.ScalarAsync(ReadyWorkers) == 2, Deadline,
            "two hot workers", _cluster.Diagnostics);

        await using var holder = new NpgsqlConnection(database.ConnectionString);
        await holder.OpenAsync();
        await using var held = await holder.BeginTransactionAsync();
        await using (var lockPool = new NpgsqlCommand(
                         $"SELECT 1 FROM pools WHERE \"Name\" = '{Pool}' FOR UPDATE", holder, held))
        {
            Assert.Equal(1, await lockPool.ExecuteScalarAsync());
        }

        var request = new LeaseRequested(NewId.NextGuid(), Instance, LifecycleCluster.ThumbprintOf(Instance), Pool,
            "task", DateTimeOffset.UtcNow);
        _cluster.Ledger.Requested(request);
        await _cluster.PublishWithRetryAsync(request);
        await Eventually.True(() => _cluster.Ledger.OutcomesOf(request.LeaseId).Count > 0, Deadline,
            $"an outcome for lease {request.LeaseId} with the pool's row locked", _cluster.Diagnostics);
        Assert.IsType<LeaseGranted>(_cluster.Ledger.OutcomesOf(request.LeaseId)[0]);

        // The lock was held throughout: another transaction still cannot take it.
        await using (var probe = new NpgsqlConnection(database.ConnectionString))
        {
            await probe.OpenAsync();
            var refused = await Assert.ThrowsAsync<PostgresException>(async () =>
            {
                await using var tryLock = new NpgsqlCommand(
                    $"SELECT 1 FROM pools WHERE \"Name\" = '{Pool}' FOR SHARE NOWAIT", probe);
                await tryLock.ExecuteScalarAsync();
            });
            Assert.Equal(PostgresErrorCodes.LockNotAvailable, refused.SqlState);
        }

        // The pool keeper's top-up waited for the lock, and replaces the hot worker once it is let go.
        Assert.Equal(1L, await _cluster.ScalarAsync(ReadyWorkers));
        await held.RollbackAsync();
        await Eventually.True(async () => await _cluster.ScalarAsync(ReadyWorkers) == 2, Deadline,
            "the hot worker replaced", _cluster.Diagnostics);
    }
}
