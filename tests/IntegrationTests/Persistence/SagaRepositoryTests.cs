using System.Diagnostics.Metrics;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.IntegrationTests.Persistence;

/// <summary>
/// The EF Core saga repository under contention, on the real broker: two hosts (two buses, competing
/// consumers on one saga queue, as two processes would be) hammer a single saga.
/// </summary>
public abstract class SagaRepositoryTests(RabbitMqTestVirtualHost broker) : IAsyncLifetime
{
    readonly List<IHost> _hosts = [];
    readonly MeterListener _conflicts = new();
    long _conflictCount;

    protected abstract IReadOnlyDictionary<string, string?> DatabaseSettings { get; }

    public async Task InitializeAsync()
    {
        // dw_saga_conflicts_total of this saga type (the integration tests run one at a time: no other test's sagas
        // count here).
        _conflicts.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == DwTelemetry.Name && instrument.Name == "dw_saga_conflicts_total")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _conflicts.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            if (tags.ToArray().Contains(new("saga", nameof(CounterSaga))))
            {
                Interlocked.Add(ref _conflictCount, value);
            }
        });
        _conflicts.Start();

        // One after the other: the first creates the schema.
        _hosts.Add(await StartHostAsync());
        _hosts.Add(await StartHostAsync());
    }

    public async Task DisposeAsync()
    {
        _conflicts.Dispose();

        foreach (var host in _hosts)
        {
            await host.StopAsync();
            host.Dispose();
        }
    }

    [Fact]
    public async Task Two_times_500_concurrent_increments_on_one_saga_end_at_exactly_1000()
    {
        var id = NewId.NextGuid();

        await Task.WhenAll(
            _hosts.Select(host => PublishAsync(host, Enumerable.Range(0, 500).Select(_ => new Increment(id)))));

        CounterSaga? saga = null;
        await Eventually.True(
            async () => (saga = await LoadAsync(id))?.Count >= 1000,
            TimeSpan.FromSeconds(180),
            "1,000 increments",
            () => $"count {saga?.Count}");
        await Eventually.True(async () => await IdleAsync(), TimeSpan.FromSeconds(60), "the saga queue to drain");

        saga = await LoadAsync(id);
        Assert.Equal(1000, saga!.Count);
        Assert.Equal(0, await broker.QueueDepthAsync("counter_error"));
        // The race did happen: some attempts lost on the version check (or the first insert) and ran again.
        Assert.True(Attempts > 1000,
            $"expected optimistic-concurrency retries, saw {Attempts} attempts for 1,000 messages");
        // Each save that lost on the version is counted for ops (dw_saga_conflicts_total, tag saga).
        Assert.True(Interlocked.Read(ref _conflictCount) > 0,
            $"expected dw_saga_conflicts_total to count the lost saves, saw none in {Attempts} attempts");
    }

    [Fact]
    public async Task A_message_that_fails_halfway_leaves_no_trace_and_the_others_still_count()
    {
        var id = NewId.NextGuid();
        await PublishAsync(_hosts[0], [new Increment(id)]);
        await Eventually.True(async () => await LoadAsync(id) is not null, TimeSpan.FromSeconds(30),
            "the saga created");

        // Poison among the increments, so that behind a gate it lands in the middle of groups.
        var messages = Enumerable.Range(0, 300)
            .Select(i => i % 15 == 7 ? (object)new PoisonedIncrement(id) : new Increment(id)).ToList();
        var increments = 1 + messages.Count(m => m is Increment);
        await Task.WhenAll(messages.Select(m => _hosts[0].Services.GetRequiredService<IBus>().Publish(m)));

        CounterSaga? saga = null;
        long errors = 0;
        await Eventually.True(
            async () => (errors = await broker.QueueDepthAsync("counter_error")) == messages.Count - (increments - 1)
                && await IdleAsync(),
            TimeSpan.FromSeconds(120),
            "every poisoned increment in counter_error and the queue drained",
            () => $"counter_error {errors}");
        await Eventually.True(
            async () => (saga = await LoadAsync(id))!.Count == increments, TimeSpan.FromSeconds(30),
            $"a count of {increments}", () => $"count {saga?.Count}");

        // The other tests of the class share the queues.
        await broker.PurgeAsync("counter_error");
        await Eventually.True(async () => await broker.QueueDepthAsync("counter_error") == 0, TimeSpan.FromSeconds(30),
            "counter_error purged");
    }

    [Fact]
    public async Task Duplicate_creation_of_one_correlation_id_yields_one_saga()
    {
        var id = NewId.NextGuid();

        await Task.WhenAll(
            _hosts.Select(host => PublishAsync(host, Enumerable.Range(0, 25).Select(_ => new CreateCounter(id)))));

        CounterSaga? saga = null;
        await Eventually.True(
            async () => (saga = await LoadAsync(id)) is { } s && s.Creations + s.Duplicates >= 50,
            TimeSpan.FromSeconds(120),
            "50 creations handled",
            () => $"creations {saga?.Creations}, duplicates {saga?.Duplicates}");

        Assert.Equal(1, saga!.Creations);
        Assert.Equal(49, saga.Duplicates);
        Assert.Equal(1, await CountAsync(id));
        Assert.Equal(0, await broker.QueueDepthAsync("counter_error"));
    }

    int Attempts => _hosts.Sum(h => h.Services.GetRequiredService<AttemptCounter>().Attempts);

    Task<IHost> StartHostAsync()
        => TestBus.StartAsync(
            broker.Settings.Concat(DatabaseSettings),
            bus => bus.AddSagaStateMachine<CounterStateMachine, CounterSaga, CounterSagaDefinition>()
                .EntityFrameworkRepository(r =>
                {
                    r.ConcurrencyMode = ConcurrencyMode.Optimistic;
                    r.ExistingDbContext<CounterDbContext>();
                }),
            (services, configuration) => services
                .AddSingleton<AttemptCounter>()
                .AddDynamicWorkersDatabase<CounterDbContext>(configuration,
                    ContextPool<CounterDbContext>.Of<CounterDbContext>));

    static async Task PublishAsync<T>(IHost host, IEnumerable<T> messages)
        where T : class
    {
        var bus = host.Services.GetRequiredService<IBus>();
        await Task.WhenAll(messages.Select(m => bus.Publish(m)));
    }

    async Task<CounterSaga?> LoadAsync(Guid id)
    {
        await using var scope = _hosts[0].Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CounterDbContext>();
        return await db.Set<CounterSaga>().AsNoTracking().SingleOrDefaultAsync(x => x.CorrelationId == id);
    }

    async Task<int> CountAsync(Guid id)
    {
        await using var scope = _hosts[0].Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<CounterDbContext>().Set<CounterSaga>()
            .CountAsync(x => x.CorrelationId == id);
    }

    async Task<bool> IdleAsync() => await broker.QueueDepthAsync("counter") == 0;
}

public sealed class PostgresSagaRepositoryTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : SagaRepositoryTests(broker), IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>
{
    protected override IReadOnlyDictionary<string, string?> DatabaseSettings => database.Settings;
}

public sealed class SqliteSagaRepositoryTests(RabbitMqTestVirtualHost broker, SqliteTestDatabase database)
    : SagaRepositoryTests(broker), IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<SqliteTestDatabase>
{
    protected override IReadOnlyDictionary<string, string?> DatabaseSettings => database.Settings;
}
