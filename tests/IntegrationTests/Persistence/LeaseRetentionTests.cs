using System.Data.Common;
using System.Diagnostics;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.IntegrationTests.Support;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Queries;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;
using Xunit.Abstractions;

namespace DynamicWorkers.IntegrationTests.Persistence;

/// <summary>
/// A million ended leases on PostgreSQL: every lease query of the API, the dashboard, the sweep and retention runs on
/// an index (its plan has no sequential scan of <c>leases</c>), retention deletes only what is past it, and the timings
/// are printed (figures, not assertions).
/// </summary>
public sealed class LeaseRetentionTests(ITestOutputHelper output) : IAsyncLifetime
{
    const int Ended = 1_000_000;
    const int PastRetention = 5_000;
    const string Pool = "linux";

    readonly PostgresTestDatabase _database = new();
    readonly CapturedCommands _commands = new();

    public async Task InitializeAsync()
    {
        await _database.InitializeAsync();
        await using var db = Context();
        await db.Database.MigrateAsync();
    }

    public Task DisposeAsync() => _database.DisposeAsync();

    [Fact]
    public async Task Every_lease_query_uses_an_index_among_a_million_ended_leases_and_retention_deletes_only_the_old()
    {
        var seed = Stopwatch.StartNew();
        // Ended yesterday (kept), ended eight days ago (past the default retention), and a few open: granted and
        // waiting.
        await ExecuteAsync($"""
            INSERT INTO leases ("CorrelationId", "CurrentState", "InstanceId", "ServerThumbprint", "Pool", "ReceivedAt", "RequestedAt",
                "AllocationTimeout", "EndedAt", "ReleaseRequested", "Reused", "Waited", "Version")
            SELECT gen_random_uuid(), 'Released', 'instance-' || (i % 1000), repeat('a', 40), '{Pool}',
                now() - interval '1 day' - i * interval '1 ms', now() - interval '1 day' - i * interval '1 ms', interval '5 minutes',
                CASE WHEN i <= {PastRetention} THEN now() - interval '8 days' - i * interval '1 ms' ELSE now() - interval '1 day' + i * interval '1 ms' END,
                false, false, false, 1
            FROM generate_series(1, {Ended}) AS i;
            INSERT INTO leases ("CorrelationId", "CurrentState", "InstanceId", "ServerThumbprint", "Pool", "ReceivedAt", "RequestedAt",
                "AllocationTimeout", "ReleaseRequested", "Reused", "Waited", "Version")
            SELECT gen_random_uuid(), CASE WHEN i % 2 = 0 THEN 'Granted' ELSE 'WaitingForWorker' END, 'instance-' || i, repeat('a', 40), '{Pool}',
                now(), now(), interval '5 minutes', false, false, i % 2 = 1, 1
            FROM generate_series(1, 20) AS i;
            ANALYZE leases;
            """);
        output.WriteLine($"seeded {Ended:N0} ended and 20 open leases in {seed.Elapsed.TotalSeconds:0.0} s");

        await using var services = Services();
        await TimedAsync(services, "/api/leases (open, then latest ended)",
            sp => sp.GetRequiredService<OpsQueries>().LeasesAsync(null, null, 200, default));
        await TimedAsync(services, "/api/leases?pool=",
            sp => sp.GetRequiredService<OpsQueries>().LeasesAsync(Pool, null, 200, default));
        await TimedAsync(services, "/api/leases?instance=",
            sp => sp.GetRequiredService<OpsQueries>().LeasesAsync(null, "instance-7", 200, default));
        await TimedAsync(services, "/api/pools (waiting count)",
            sp => sp.GetRequiredService<OpsQueries>().PoolsAsync(null, default));
        await TimedAsync(services, "sweep: waiting leases", sp => SweepOverdueTimersConsumer.WaitingLeases(
            sp.GetRequiredService<DynamicWorkersDbContext>()).ToListAsync());
        await TimedAsync(services, "sweep: granted leases without their worker", sp =>
            SweepOverdueTimersConsumer.GrantsWithoutWorker(sp.GetRequiredService<DynamicWorkersDbContext>(),
                DateTimeOffset.UtcNow).ToListAsync());

        await using (var scope = services.CreateAsyncScope())
        {
            var listed =
                await scope.ServiceProvider.GetRequiredService<OpsQueries>().LeasesAsync(null, null, 200, default);
            Assert.Equal(20, listed.Count(l => l.EndedAt is null));
        }

        var purge = ActivatorUtilities.CreateInstance<EndedLeasePurge>(services);
        var timer = Stopwatch.StartNew();
        var deleted = await purge.PurgeAsync(default);
        output.WriteLine(
            $"retention: deleted {deleted:N0} leases in {timer.ElapsedMilliseconds} ms (batches of 1,000)");
        Assert.Equal(PastRetention, deleted);
        Assert.Equal(Ended - PastRetention + 20, await _database.ScalarAsync("SELECT count(*) FROM leases"));
        Assert.Equal(0,
            await _database.ScalarAsync("SELECT count(*) FROM leases WHERE \"EndedAt\" < now() - interval '7 days'"));
        Assert.Equal(0, await purge.PurgeAsync(default));

        // The plans of every command those ran, as PostgreSQL would run them now.
        var commands = _commands.Take();
        Assert.True(commands.Count >= 8, $"{commands.Count} commands captured");
        foreach (var command in commands)
        {
            var plan = await ExplainAsync(command);
            output.WriteLine($"{command.Text}\n{plan}\n");
            Assert.False(plan.Contains("Seq Scan on leases", StringComparison.Ordinal),
                $"a sequential scan of leases:\n{command.Text}\n{plan}");
        }
    }

    async Task TimedAsync<T>(ServiceProvider services, string what, Func<IServiceProvider, Task<T>> query)
    {
        var times = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            await using var scope = services.CreateAsyncScope();
            var watch = Stopwatch.StartNew();
            await query(scope.ServiceProvider);
            times.Add(watch.Elapsed.TotalMilliseconds);
        }

        times.Sort();
        output.WriteLine($"{what}: median {times[2]:0.0} ms, max {times[^1]:0.0} ms of 5");
    }

    ServiceProvider Services()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton(TimeProvider.System);
        services.AddScoped<DynamicWorkersDbContext>(_ => Context());
        services.AddScoped<OpsQueries>();
        services.AddSingleton<IOptionsMonitor<PoolsOptions>>(new StaticOptions<PoolsOptions>(
            new PoolsOptions { Pools = { [Pool] = new PoolOptions { Image = "img" } } }));
        services.AddSingleton<IOptionsMonitor<RetentionOptions>>(
            new StaticOptions<RetentionOptions>(new RetentionOptions()));
        return services.BuildServiceProvider();
    }

    DynamicWorkersDbContext Context()
        => new PostgresDynamicWorkersDbContext(new DbContextOptionsBuilder<DynamicWorkersDbContext>()
            .UseDynamicWorkersDatabase(new DatabaseOptions { Provider = DatabaseProvider.Postgres,
                ConnectionString = _database.ConnectionString }, NullLoggerFactory.Instance)
            .AddInterceptors(_commands)
            .Options);

    async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(_database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 300 };
        await command.ExecuteNonQueryAsync();
    }

    async Task<string> ExplainAsync(CapturedCommand captured)
    {
        await using var connection = new NpgsqlConnection(_database.ConnectionString);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using var command = new NpgsqlCommand("EXPLAIN " + captured.Text, connection, transaction);
        foreach (var (name, value) in captured.Parameters)
        {
            command.Parameters.Add(new NpgsqlParameter(name, value));
        }

        var lines = new List<string>();
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                lines.Add(reader.GetString(0));
            }
        }

        // EXPLAIN of a DELETE plans it without running it; the transaction is rolled back all the same.
        await transaction.RollbackAsync();
        return string.Join('\n', lines);
    }

    sealed record CapturedCommand(string Text, IReadOnlyList<(string Name, object? Value)> Parameters);

    /// <summary>Every command the contexts send that reads or deletes leases, with its parameters.</summary>
    sealed class CapturedCommands : DbCommandInterceptor
    {
        readonly List<CapturedCommand> _commands = [];

        public IReadOnlyList<CapturedCommand> Take()
        {
            lock (_commands)
            {
                return _commands.DistinctBy(c => c.Text).ToList();
            }
        }

        public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(
            DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result,
            CancellationToken cancellationToken = default)
        {
            Capture(command);
            return base.ReaderExecutingAsync(command, eventData, result, cancellationToken);
        }

        public override ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(
            DbCommand command, CommandEventData eventData, InterceptionResult<int> result,
            CancellationToken cancellationToken = default)
        {
            Capture(command);
            return base.NonQueryExecutingAsync(command, eventData, result, cancellationToken);
        }

        void Capture(DbCommand command)
        {
            if (!command.CommandText.Contains("FROM leases", StringComparison.Ordinal))
            {
                return;
            }

            lock (_commands)
            {
                _commands.Add(new CapturedCommand(command.CommandText,
                    command.Parameters.Cast<DbParameter>().Select(p => (p.ParameterName, (object?)p.Value)).ToList()));
            }
        }
    }

    sealed class StaticOptions<T>(T value) : IOptionsMonitor<T>
    {
        public T CurrentValue => value;

        public T Get(string? name) => value;

        public IDisposable? OnChange(Action<T, string?> listener) => null;
    }
}
