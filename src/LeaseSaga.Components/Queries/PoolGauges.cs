using System.Diagnostics.Metrics;
using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Queries;

/// <summary>
/// The <c>dw_workers</c>, <c>dw_leases_waiting</c> and <c>dw_pool_hot_target</c> gauges. A scrape must not hit the
/// database, so the pool status is sampled every few seconds and the gauges report the last sample. A (pool, state)
/// seen once keeps reporting (0 when empty), so a drained state drops to zero instead of vanishing from the dashboards.
/// The same sample feeds <see cref="PoolHistory"/>.
/// </summary>
public sealed class PoolGauges : BackgroundService
{
    static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    readonly IServiceScopeFactory _scopes;
    readonly PoolHistory _history;
    readonly ILogger<PoolGauges> _logger;
    readonly HashSet<(string Pool, string State)> _seen = [];
    IReadOnlyList<PoolSummary> _latest = [];

    public PoolGauges(IServiceScopeFactory scopes, IMeterFactory meters, PoolHistory history,
        ILogger<PoolGauges> logger)
    {
        _scopes = scopes;
        _history = history;
        _logger = logger;
        var meter = meters.Create(DwTelemetry.Name);
        meter.CreateObservableGauge(DwTelemetry.WorkersGauge, ObserveWorkers, description: "Workers by pool and state");
        meter.CreateObservableGauge(DwTelemetry.LeasesWaitingGauge, ObserveWaiting,
            description: "Leases waiting for a worker, by pool");
        meter.CreateObservableGauge(DwTelemetry.HotTargetGauge, ObserveHotTarget,
            description: "The hot target in force, adaptive or set, by pool");
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval);
        do
        {
            try
            {
                await using var scope = _scopes.CreateAsyncScope();
                var pools = await scope.ServiceProvider.GetRequiredService<OpsQueries>()
                    .PoolsAsync(null, stoppingToken);
                lock (_seen)
                {
                    _latest = pools;
                    _seen.UnionWith(pools.SelectMany(p => p.WorkersByState.Keys.Select(s => (p.Pool, s))));
                }

                // The dashboard's level charts reuse this query rather than asking the database again.
                _history.RecordLevels(pools.Select(p => (p.Pool, p.WorkersByState, p.WaitingLeases)));
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The database is down: /readyz says so; the gauges keep their last sample.
                _logger.LogDebug(e, "Pool gauges not refreshed");
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    IEnumerable<Measurement<long>> ObserveWorkers()
    {
        lock (_seen)
        {
            return _seen.Select(key => new Measurement<long>(
                _latest.FirstOrDefault(p => p.Pool == key.Pool)?.WorkersByState.GetValueOrDefault(key.State) ?? 0,
                new("pool", key.Pool), new("state", key.State))).ToList();
        }
    }

    IEnumerable<Measurement<long>> ObserveWaiting() => ObservePools(p => p.WaitingLeases);

    IEnumerable<Measurement<long>> ObserveHotTarget() => ObservePools(p => p.HotTarget);

    IEnumerable<Measurement<long>> ObservePools(Func<PoolSummary, int> value)
    {
        lock (_seen)
        {
            return _latest
                .Select(p => new Measurement<long>(value(p), new KeyValuePair<string, object?>("pool", p.Pool)))
                .ToList();
        }
    }
}
