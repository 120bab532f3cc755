using System.Collections.Concurrent;
using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.Simulator;

/// <summary>What is simulated besides the trace: the cloud's provisioning times, its outage, the pool's
/// bounds.</summary>
public sealed record SimulationPlan(
    TimeSpan Length,
    TimeSpan OutageStart,
    TimeSpan OutageLength,
    int Seed = 7,
    double ProvisioningMinMinutes = 3,
    double ProvisioningMaxMinutes = 20,
    int MaxWorkers = 200)
{
    public static readonly DateTimeOffset Start = new(2026, 3, 2, 0, 0, 0, TimeSpan.Zero);

    public bool InOutage(DateTimeOffset at) => at >= Start + OutageStart && at < Start + OutageStart + OutageLength;
}

/// <summary>How the pool's hot target is chosen: fixed, or adaptive within bounds.</summary>
public sealed record PoolStrategy(string Name, int HotTarget, bool Adaptive = false, int MinHot = 0, int MaxHot = 50,
    double TargetWaitProbability = 0.05)
{
    public static PoolStrategy Fixed(int hotTarget) => new($"fixed {hotTarget}", hotTarget);
}

/// <summary>
/// One day of a trace against one pool strategy: the LeaseSaga's own state machines, allocation and pool keeper on the
/// in-memory bus with SQLite, a virtual clock that jumps to the next thing that happens, and a
/// <see cref="VirtualCloud"/>.
/// </summary>
public sealed class DaySimulation : IAsyncDisposable
{
    public const string Pool = "linux";
    static readonly string Thumbprint = new('c', 40);

    readonly string _file = Path.Combine(Path.GetTempPath(), $"dw-simulation-{Guid.NewGuid():N}.db");
    readonly SimulationPlan _plan;
    readonly PoolStrategy _strategy;
    readonly VirtualClock _clock = new(SimulationPlan.Start);
    readonly BusActivity _activity = new();
    readonly Instances _instances = new();
    IHost _host = null!;

    DaySimulation(SimulationPlan plan, PoolStrategy strategy)
    {
        _plan = plan;
        _strategy = strategy;
    }

    public static async Task<DayResult> RunAsync(IReadOnlyList<TraceLease> trace, SimulationPlan plan,
        PoolStrategy strategy, CancellationToken cancellationToken)
    {
        await using var simulation = new DaySimulation(plan, strategy);
        await simulation.StartAsync();
        return await simulation.RunAsync(trace, cancellationToken);
    }

    async Task StartAsync()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Database:Provider"] = "Sqlite",
            ["ConnectionStrings:Default"] = $"Data Source={_file}",
            [$"Pools:{Pool}:HotTarget"] = _strategy.HotTarget.ToString(),
            [$"Pools:{Pool}:MaxWorkers"] = _plan.MaxWorkers.ToString(),
            [$"Pools:{Pool}:Image"] = "simulated-image",
            [$"Pools:{Pool}:MaxLeasesPerInstance"] = "1000",
            [$"Pools:{Pool}:MaxWaitingPerInstance"] = "1000",
            [$"Pools:{Pool}:Adaptive:Enabled"] = _strategy.Adaptive.ToString(),
            [$"Pools:{Pool}:Adaptive:MinHot"] = _strategy.MinHot.ToString(),
            [$"Pools:{Pool}:Adaptive:MaxHot"] = _strategy.MaxHot.ToString(),
            [$"Pools:{Pool}:Adaptive:TargetWaitProbability"] =
                _strategy.TargetWaitProbability.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        builder.Services.AddVirtualTimeLeaseSaga(builder.Configuration, _clock);
        builder.Services.AddSingleton(_plan);
        builder.Services.AddSingleton(_instances);
        builder.Services.AddSingleton<VirtualCloud>();
        builder.Services.AddSingleton<IWorkerCloud>(services => services.GetRequiredService<VirtualCloud>());
        builder.Services.AddMassTransit(x => x.AddVirtualTimeLeaseSagaEndpoints(bus =>
        {
            bus.AddConsumer<VirtualProvisionConsumer>().Endpoint(e => e.Name = CloudQueues.ProvisionWorker);
            bus.AddConsumer<VirtualTrustConsumer>().Endpoint(e => e.Name = CloudQueues.TrustWorker);
            bus.AddConsumer<VirtualDeprovisionConsumer>().Endpoint(e => e.Name = CloudQueues.DeprovisionWorker);
            bus.AddConsumer<InstanceConsumer>().Endpoint(e => e.Name = "simulated-instances");
        }));
        _host = builder.Build();
        var bus = _host.Services.GetRequiredService<IBusControl>();
        bus.ConnectReceiveObserver(_activity);
        bus.ConnectSendObserver(_activity);
        bus.ConnectPublishObserver(_activity);
        await _host.StartAsync();
    }

    async Task<DayResult> RunAsync(IReadOnlyList<TraceLease> trace, CancellationToken cancellationToken)
    {
        var bus = _host.Services.GetRequiredService<IBus>();
        var cloud = _host.Services.GetRequiredService<VirtualCloud>();
        var scheduler = _host.Services.GetRequiredService<VirtualScheduler>();
        var end = SimulationPlan.Start + _plan.Length;
        var arrivals = new Queue<TraceLease>(trace.Where(t => t.At < _plan.Length));
        var outageStart = SimulationPlan.Start + _plan.OutageStart;
        var nextEvaluation = SimulationPlan.Start + TimeSpan.FromMinutes(1);
        var account = new IdleAccount(SimulationPlan.Start);
        TimeSpan? bufferLasted = null;
        var steps = 0;
        var wall = System.Diagnostics.Stopwatch.StartNew();
        await _activity.SettledAsync(cancellationToken);

        while (true)
        {
            var next = new[]
            {
                arrivals.TryPeek(out var arrival) ? SimulationPlan.Start + arrival.At : (DateTimeOffset?)null,
                _instances.NextRelease,
                cloud.NextDue,
                scheduler.NextDue,
                _strategy.Adaptive ? nextEvaluation : null,
                _plan.OutageLength > TimeSpan.Zero && _clock.GetUtcNow() < outageStart ? outageStart : null,
            }.Where(t => t is not null).Select(t => t!.Value).DefaultIfEmpty(end).Min();
            if (next >= end)
            {
                break;
            }

            // Whole seconds: a timer's delay crosses the real clock on its way (a fraction of a millisecond early), and
            // a deadline must have passed when its timer fires, or the machine re-arms it for the rest, again and
            // again.
            _clock.MoveTo(new DateTimeOffset(
                (next.UtcTicks + TimeSpan.TicksPerSecond - 1) / TimeSpan.TicksPerSecond * TimeSpan.TicksPerSecond,
                TimeSpan.Zero));
            var now = _clock.GetUtcNow();
            if (++steps % 200 == 0 && Environment.GetEnvironmentVariable("DW_SIMULATION_PROGRESS") is not null)
            {
                Console.Error.WriteLine(
                    $"{_strategy.Name}: step {steps} at {now - SimulationPlan.Start} after {wall.Elapsed}");
            }

            while (arrivals.TryPeek(out var due) && SimulationPlan.Start + due.At <= now)
            {
                arrivals.Dequeue();
                var leaseId = NewId.NextGuid();
                _instances.Requested(leaseId, due);
                await bus.Publish(new LeaseRequested(leaseId, due.InstanceId, Thumbprint, Pool, null, now),
                    cancellationToken);
            }

            foreach (var release in _instances.DueReleases(now))
            {
                await bus.Publish(new LeaseReleased(release.LeaseId, release.InstanceId), cancellationToken);
            }

            await cloud.AnswerDueAsync(bus);
            await scheduler.DeliverDueAsync(bus);
            if (_strategy.Adaptive && now >= nextEvaluation)
            {
                await bus.Publish(new EvaluateHotTarget(Pool), cancellationToken);
                nextEvaluation += TimeSpan.FromMinutes(1);
            }

            await _activity.SettledAsync(cancellationToken);
            var counts = await CountAsync(cancellationToken);
            account.Record(now, counts.Idle, counts.Live);
            if (bufferLasted is null && _plan.InOutage(now) && counts.Ready == 0)
            {
                bufferLasted = now - outageStart;
            }
        }

        account.Record(end, 0, 0);
        return await ResultAsync(account, bufferLasted, cloud.Created, cancellationToken);
    }

    async Task<(int Idle, int Ready, int Live)> CountAsync(CancellationToken cancellationToken)
    {
        await using var scope = _host.Services.CreateAsyncScope();
        var states = await scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>().Set<WorkerState>()
            .GroupBy(w => w.CurrentState).Select(g => new { g.Key, Count = g.Count() }).ToListAsync(cancellationToken);
        int Of(params string[] names) => states.Where(s => names.Contains(s.Key)).Sum(s => s.Count);
        return (Of(WorkerStates.Ready, WorkerStates.Idle), Of(WorkerStates.Ready), Of(WorkerStates.Live));
    }

    async Task<DayResult> ResultAsync(IdleAccount account, TimeSpan? bufferLasted, int created,
        CancellationToken cancellationToken)
    {
        await using var scope = _host.Services.CreateAsyncScope();
        var leases = await scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>().Set<LeaseState>()
            .AsNoTracking().ToListAsync(cancellationToken);
        var granted = leases.Where(l => l.GrantedAt is not null).ToList();
        var waits = granted.Select(l => l.GrantedAt!.Value - l.ReceivedAt).ToList();
        return new DayResult(
            _strategy.Name,
            leases.Count,
            granted.Count,
            leases.Count(l => l.RejectReason is not null),
            granted.Count(l => l.Reused),
            // Served by a new VM: waited in line and not by an idle worker of its own instance that came free
            // meanwhile.
            granted.Count(l => l.Waited && !l.Reused),
            Percentile(waits, 0.50),
            Percentile(waits, 0.95),
            account.IdleVmHours,
            account.VmHours,
            _plan.OutageLength > TimeSpan.Zero ? bufferLasted ?? _plan.OutageLength : null,
            created);
    }

    /// <summary>Nearest rank: the smallest value with at least <paramref name="fraction"/> of the values at or below
    /// it.</summary>
    public static TimeSpan Percentile(IReadOnlyList<TimeSpan> values, double fraction)
    {
        if (values.Count == 0)
        {
            return TimeSpan.Zero;
        }

        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(fraction * sorted.Count) - 1, 0, sorted.Count - 1)];
    }

    public async ValueTask DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.StopAsync();
            _host.Dispose();
        }

        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        File.Delete(_file);
    }
}

/// <summary>The simulated instances: each grant is released once its task's duration has passed on the virtual
/// clock.</summary>
public sealed class Instances
{
    public sealed record Release(Guid LeaseId, string InstanceId);

    readonly ConcurrentDictionary<Guid, TraceLease> _requested = new();
    readonly PriorityQueue<Release, DateTimeOffset> _releases = new();
    public void Requested(Guid leaseId, TraceLease lease) => _requested[leaseId] = lease;

    public void Granted(Guid leaseId, VirtualClock clock)
    {
        if (_requested.TryRemove(leaseId, out var lease))
        {
            lock (_releases)
            {
                _releases.Enqueue(new Release(leaseId, lease.InstanceId), clock.GetUtcNow() + lease.Duration);
            }
        }
    }

    public void Rejected(Guid leaseId) => _requested.TryRemove(leaseId, out _);

    public DateTimeOffset? NextRelease
    {
        get
        {
            lock (_releases)
            {
                return _releases.TryPeek(out _, out var at) ? at : null;
            }
        }
    }

    public List<Release> DueReleases(DateTimeOffset now)
    {
        var due = new List<Release>();
        lock (_releases)
        {
            while (_releases.TryPeek(out var release, out var at) && at <= now)
            {
                _releases.Dequeue();
                due.Add(release);
            }
        }

        return due;
    }
}

public sealed class InstanceConsumer(Instances instances, VirtualClock clock) : IConsumer<LeaseGranted>,
    IConsumer<LeaseRejected>
{
    public Task Consume(ConsumeContext<LeaseGranted> context)
    {
        instances.Granted(context.Message.LeaseId, clock);
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<LeaseRejected> context)
    {
        instances.Rejected(context.Message.LeaseId);
        return Task.CompletedTask;
    }
}

/// <summary>VM time, integrated over the virtual clock from counts that change only when something happens.</summary>
public sealed class IdleAccount(DateTimeOffset start)
{
    DateTimeOffset _since = start;
    int _idle;
    int _live;

    public double IdleVmHours { get; private set; }
    public double VmHours { get; private set; }

    /// <summary>From now on <paramref name="idle"/> VMs idle (hot or idle for their instance) out of
    /// <paramref name="live"/>.</summary>
    public void Record(DateTimeOffset now, int idle, int live)
    {
        var hours = (now - _since).TotalHours;
        IdleVmHours += _idle * hours;
        VmHours += _live * hours;
        (_since, _idle, _live) = (now, idle, live);
    }
}

/// <summary>What one strategy did over the day.</summary>
public sealed record DayResult(
    string Strategy,
    int Leases,
    int Granted,
    int Rejected,
    int Reused,
    int WaitedForVm,
    TimeSpan P50,
    TimeSpan P95,
    double IdleVmHours,
    double VmHours,
    TimeSpan? BufferLasted,
    int VmsCreated);
