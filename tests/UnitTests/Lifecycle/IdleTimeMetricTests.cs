using System.Diagnostics.Metrics;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>Runs alone: the meter is process-wide and other lifecycle tests use the same pool name.</summary>
[CollectionDefinition(nameof(MeterCollection), DisableParallelization = true)]
public sealed class MeterCollection;

[Collection(nameof(MeterCollection))]
public sealed class IdleTimeMetricTests
{
    [Fact]
    public async Task Idle_time_counts_a_hot_worker_until_it_is_leased_and_an_idle_one_until_it_is_deleted()
    {
        var idleSeconds = 0.0;
        var gate = new object();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == DwTelemetry.Name && instrument.Name == "dw_worker_idle_seconds_total")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, value, tags, _) =>
        {
            if (tags.ToArray().Contains(new("pool", Pool)))
            {
                lock (gate)
                {
                    idleSeconds += value;
                }
            }
        });
        listener.Start();
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 2);
        await bed.UntilWorkersAsync("Ready", 1);

        await bed.AdvanceAsync(TimeSpan.FromMinutes(10));
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        Assert.Equal(600, idleSeconds, 3);

        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);
        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromMinutes(60));
        await bed.AdvanceAsync(TimeSpan.FromMinutes(60));
        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == granted.WorkerId),
            "the idle worker's deprovisioning");

        // Ten minutes hot, then sixty idle; the hot worker that replaced it has not stopped idling yet.
        Assert.Equal(600 + 3600, idleSeconds, 3);
    }
}
