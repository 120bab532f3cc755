using System.Diagnostics;
using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using DynamicWorkers.Simulator;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>
/// The three state machines on MassTransit's in-memory test harness, persisted by the real EF Core
/// repository (a SQLite file per test), with a virtual clock driving every timeout and an instant fake cloud.
/// </summary>
public sealed class LifecycleBed : IAsyncDisposable
{
    public const string Pool = "linux";
    public static readonly string ThumbprintA = new('a', 40);
    public static readonly string ThumbprintB = new('b', 64);

    readonly string _file = Path.Combine(Path.GetTempPath(), $"dw-unit-{Guid.NewGuid():N}.db");
    IHost _host = null!;
    Action<IDictionary<string, string?>> _settings = _ => { };

    public ITestHarness Harness { get; private set; } = null!;
    public FakeCloud Cloud { get; } = new();
    public static readonly DateTimeOffset Start = new(2026, 1, 5, 9, 0, 0, TimeSpan.Zero);

    public VirtualClock Clock { get; } = new(Start);
    public VirtualScheduler Scheduler { get; private set; } = null!;
    public DropPlan Drops { get; } = new();
    public ClientInbox Client { get; } = new();

    /// <param name="logs">also receives every record from Information up, whatever the console shows</param>
    /// <param name="maxWaitingPerInstance">by default the pool's default, or its whole line when that is
    /// shorter</param>
    /// <param name="drop">the one message to lose, armed before the first message flows</param>
    /// <param name="settings">further configuration keys, e.g. the pool's <c>Adaptive:*</c></param>
    public static async Task<LifecycleBed> StartAsync(
        int hotTarget = 1, int maxWorkers = 3, Action<FakeCloud>? cloud = null, int maxWaiting = 1000,
        LogCapture? logs = null,
        int maxLeasesPerInstance = 100, int? maxWaitingPerInstance = null,
        (string Target, Func<ConsumeContext, bool> Match)? drop = null,
        Action<IDictionary<string, string?>>? settings = null)
    {
        var bed = new LifecycleBed();
        bed._settings = settings ?? bed._settings;
        cloud?.Invoke(bed.Cloud);
        if (drop is { } d)
        {
            bed.Drops.Arm(d.Target, d.Match);
        }

        await bed.StartHostAsync(hotTarget, maxWorkers, maxWaiting, logs, maxLeasesPerInstance,
            maxWaitingPerInstance ?? Math.Min(50, maxWaiting));
        return bed;
    }

    async Task StartHostAsync(
        int hotTarget, int maxWorkers, int maxWaiting, LogCapture? logs, int maxLeasesPerInstance,
        int maxWaitingPerInstance)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(
            Environment.GetEnvironmentVariable("DW_TEST_VERBOSE") is null ? LogLevel.Warning : LogLevel.Information);
        if (logs is not null)
        {
            // A provider-specific rule wins over the minimum level, so the console stays quiet.
            builder.Logging.AddProvider(logs);
            builder.Logging.AddFilter<LogCapture>(null, LogLevel.Information);
        }

        var initial = new Dictionary<string, string?>
        {
            ["Database:Provider"] = "Sqlite",
            ["ConnectionStrings:Default"] = $"Data Source={_file}",
            [$"Pools:{Pool}:HotTarget"] = hotTarget.ToString(),
            [$"Pools:{Pool}:MaxWorkers"] = maxWorkers.ToString(),
            [$"Pools:{Pool}:Image"] = "test-image",
            [$"Pools:{Pool}:AllocationTimeout"] = "00:05:00",
            [$"Pools:{Pool}:MaxWaiting"] = maxWaiting.ToString(),
            [$"Pools:{Pool}:MaxLeasesPerInstance"] = maxLeasesPerInstance.ToString(),
            [$"Pools:{Pool}:MaxWaitingPerInstance"] = maxWaitingPerInstance.ToString(),
        };
        _settings(initial);
        Settings = new ReloadableSettings(initial);
        ((IConfigurationBuilder)builder.Configuration).Add(Settings);
        builder.Services.AddVirtualTimeLeaseSaga(builder.Configuration, Clock);
        builder.Services.AddSingleton(Cloud);
        builder.Services.AddSingleton<IWorkerCloud>(Cloud);
        builder.Services.AddSingleton(Drops);
        builder.Services.AddSingleton(Client);
        builder.Services.AddMassTransitTestHarness(x => x.AddVirtualTimeLeaseSagaEndpoints(bus =>
        {
            // First, so outermost: a dropped message is lost before the retries and the outbox see it.
            bus.AddConfigureEndpointsCallback((context, _, endpoint) =>
                endpoint.UseFilter(new DropFilter(context.GetRequiredService<DropPlan>())));
            bus.AddConsumer<FakeProvisionConsumer>().Endpoint(e => e.Name = CloudQueues.ProvisionWorker);
            bus.AddConsumer<FakeTrustConsumer>().Endpoint(e => e.Name = CloudQueues.TrustWorker);
            bus.AddConsumer<FakeDeprovisionConsumer>().Endpoint(e => e.Name = CloudQueues.DeprovisionWorker);
            bus.AddConsumer<FakeClientConsumer>().Endpoint(e => e.Name = "instance-client");
        }));
        _host = builder.Build();
        await _host.StartAsync();
        Harness = _host.Services.GetRequiredService<ITestHarness>();
        Scheduler = _host.Services.GetRequiredService<VirtualScheduler>();
    }

    public IBus Bus => _host.Services.GetRequiredService<IBus>();

    /// <summary>The bed's configuration, changed at run time as a reloaded appsettings.json would be.</summary>
    public ReloadableSettings Settings { get; private set; } = null!;

    /// <summary>Adds a pool to the configuration while the services run.</summary>
    public void AddPool(string pool, int hotTarget, int maxWorkers)
        => Settings.Change(data =>
        {
            data[$"Pools:{pool}:HotTarget"] = hotTarget.ToString();
            data[$"Pools:{pool}:MaxWorkers"] = maxWorkers.ToString();
            data[$"Pools:{pool}:Image"] = "test-image";
            data[$"Pools:{pool}:AllocationTimeout"] = "00:05:00";
        });

    /// <summary>Removes a pool from the configuration while the services run.</summary>
    public void RemovePool(string pool)
        => Settings.Change(data =>
        {
            foreach (var key in data.Keys.Where(k => k.StartsWith($"Pools:{pool}:", StringComparison.OrdinalIgnoreCase))
                .ToList())
            {
                data.Remove(key);
            }
        });

    /// <summary>Whether any message so far failed (even once, before a retry): a fault would end in an <c>_error</c>
    /// queue.</summary>
    public bool AnyMessageFailed()
        => Harness.Consumed.Select(x => x.Exception is not null).Any() || Harness.Published.Select<Fault>().Any();

    /// <summary>Stops the service and starts it again on the same database, with <paramref name="settings"/> changed: a
    /// deployment.</summary>
    public async Task RestartAsync(int hotTarget, int maxWorkers, Action<IDictionary<string, string?>> settings)
    {
        await _host.StopAsync();
        _host.Dispose();
        _settings = settings;
        // MassTransit keeps the bus's log context in an async local: the stopped host's, whose logger factory is
        // disposed.
        LogContext.Current = null;
        await StartHostAsync(hotTarget, maxWorkers, 1000, null, 100, 50);
    }

    public IServiceProvider Services => _host.Services;

    /// <summary>Publishes a request and returns its first outcome (granted or rejected).</summary>
    public async Task<object> RequestAsync(Guid leaseId, string instance, string? thumbprint = null, string pool = Pool)
    {
        var before = Outcomes(leaseId).Count;
        await Bus.Publish(
            new LeaseRequested(leaseId, instance, thumbprint ?? ThumbprintA, pool, "task-1", Clock.GetUtcNow()));
        await Until(() => Outcomes(leaseId).Count > before, $"an outcome for lease {leaseId}");
        return Outcomes(leaseId)[before];
    }

    public Task ReleaseAsync(Guid leaseId, string instance) => Bus.Publish(new LeaseReleased(leaseId, instance));

    /// <summary>Every LeaseGranted / LeaseRejected published for a lease, in order.</summary>
    public List<object> Outcomes(Guid leaseId)
        => Harness.Published.Select(x => x.MessageObject is LeaseGranted g && g.LeaseId == leaseId
            || x.MessageObject is LeaseRejected r && r.LeaseId == leaseId)
            .OrderBy(x => x.Context.SentTime)
            .Select(x => x.MessageObject)
            .ToList();

    public List<T> PublishedOf<T>()
        where T : class
        => Harness.Published.Select<T>().Select(x => x.Context.Message).ToList();

    public async Task<List<WorkerState>> WorkersAsync()
    {
        await using var scope = _host.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>().Set<WorkerState>()
            .AsNoTracking().ToListAsync();
    }

    public async Task<LeaseState?> LeaseAsync(Guid leaseId)
    {
        await using var scope = _host.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>().Set<LeaseState>()
            .AsNoTracking().SingleOrDefaultAsync(x => x.CorrelationId == leaseId);
    }

    public async Task<PoolState?> PoolAsync()
    {
        await using var scope = _host.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>().Set<PoolState>().AsNoTracking()
            .SingleOrDefaultAsync(x => x.Name == Pool);
    }

    /// <summary>Changes a worker's row behind its state machine's back, as a lost message or timer would leave
    /// it.</summary>
    public async Task UpdateWorkerAsync(Guid workerId, Action<WorkerState> change)
    {
        await using var scope = _host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>();
        var worker = await db.Set<WorkerState>().AsTracking().SingleAsync(x => x.CorrelationId == workerId);
        change(worker);
        worker.Version++;
        await db.SaveChangesAsync();
    }

    /// <summary>A worker row as the pool keeper saves it before its ProvisionWorker goes out (or as a lost one leaves
    /// it).</summary>
    public async Task<Guid> AddWorkerAsync(string state)
    {
        await using var scope = _host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>();
        var worker = new WorkerState { CorrelationId = NewId.NextGuid(), Pool = Pool, CurrentState = state,
            CreatedAt = Clock.GetUtcNow() };
        db.Add(worker);
        await db.SaveChangesAsync();
        return worker.CorrelationId;
    }

    public Task UntilLeaseAsync(Guid leaseId, string state)
        => Until(async () => (await LeaseAsync(leaseId))?.CurrentState == state, $"lease {leaseId} {state}");

    public async Task<int> WorkersInAsync(string state) => (await WorkersAsync()).Count(w => w.CurrentState == state);

    public Task UntilWorkersAsync(string state, int count)
        => Until(async () => await WorkersInAsync(state) == count, $"{count} worker(s) {state}");

    /// <summary>
    /// Waits until a timer of type <typeparamref name="T"/>, due within <paramref name="within"/>, is armed: the
    /// schedule travels as a message, so a saga's new state can be visible before its timer is stored.
    /// </summary>
    public Task UntilTimerAsync<T>(TimeSpan within)
        => Until(() => Scheduler.HasPending(typeof(T), Clock.GetUtcNow() + within),
            $"a {typeof(T).Name} timer due within {within}");

    /// <summary>Moves the virtual clock and delivers the timeouts that fell due, then lets the system settle.</summary>
    public async Task AdvanceAsync(TimeSpan by)
    {
        await SettledAsync();
        Clock.Advance(by);
        await Scheduler.DeliverDueAsync(Bus);
    }

    static readonly TimeSpan QuietPeriod = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Waits until no message has been published, sent or consumed for a quarter of a second. (The harness's
    /// InactivityTask completes once per harness, so after the first quiet it no longer waits for anything.)
    /// </summary>
    public async Task SettledAsync()
    {
        var clock = Stopwatch.StartNew();
        var activity = MessagesSeen();
        var quietSince = clock.Elapsed;
        while (clock.Elapsed - quietSince < QuietPeriod)
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(20))
            {
                throw new TimeoutException("the system did not settle within 20 s");
            }

            await Task.Delay(20);
            var now = MessagesSeen();
            if (now != activity)
            {
                activity = now;
                quietSince = clock.Elapsed;
            }
        }
    }

    int MessagesSeen() => Harness.Published.Select(_ => true).Count() + Harness.Sent.Select(_ => true).Count()
        + Harness.Consumed.Select(_ => true).Count();

    public static Task Until(Func<bool> condition, string what) => Until(() => Task.FromResult(condition()), what);

    /// <summary>Waits on a condition with a deadline; fails with what was awaited.</summary>
    public static async Task Until(Func<Task<bool>> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(20))
            {
                throw new TimeoutException($"not within 20 s: {what}");
            }

            await Task.Delay(20);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
        SqliteConnection.ClearAllPools();
        foreach (var file in new[] { _file, _file + "-wal", _file + "-shm" })
        {
            File.Delete(file);
        }
    }
}

/// <summary>An in-memory configuration source that can change and announce a reload, as a file source with
/// reloadOnChange does.</summary>
public sealed class ReloadableSettings : ConfigurationProvider, IConfigurationSource
{
    public ReloadableSettings(IDictionary<string, string?> initial)
    {
        foreach (var (key, value) in initial)
        {
            Data[key] = value;
        }
    }

    public IConfigurationProvider Build(IConfigurationBuilder builder) => this;

    public void Change(Action<IDictionary<string, string?>> change)
    {
        change(Data);
        OnReload();
    }
}
