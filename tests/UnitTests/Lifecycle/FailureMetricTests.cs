using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Telemetry;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>
/// <c>dw_provision_failures_total</c> and <c>dw_trust_failures_total</c> (an ops contract) with the fake cloud
/// failing or never answering; in the meter collection because the meter is process-wide.
/// </summary>
[Collection(nameof(MeterCollection))]
public sealed class FailureMetricTests
{
    [Fact]
    public async Task Timed_out_and_failed_provisionings_each_count_once_in_dw_provision_failures_total()
    {
        using var counters = new PoolCounters();
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 2, cloud: c => c.HoldProvisioning = true);
        await Until(() => bed.Cloud.Held.Count == 1, "the first provisioning");
        bed.Cloud.HoldProvisioning = false;
        bed.Cloud.FailProvisioning = true;

        // Provisioning has no timer of its own: the sweep enforces its deadline.
        await bed.SettledAsync();
        await bed.AdvanceAsync(TimeSpan.FromMinutes(31.5));
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));

        // The timeout, then failed replacements until the pool backs off: every attempt failed, each counted once.
        await Until(async () => (await bed.PoolAsync())?.BackoffUntil is not null, "the pool's backoff");
        await bed.SettledAsync();
        Assert.True(bed.Cloud.Provisioned.Count >= 2, $"{bed.Cloud.Provisioned.Count} provisioning attempts");
        Assert.Equal(bed.Cloud.Provisioned.Count, counters.Total("dw_provision_failures_total"));
        Assert.Equal(0, counters.Total("dw_trust_failures_total"));
    }

    [Fact]
    public async Task A_failed_trust_counts_in_dw_trust_failures_total()
    {
        using var counters = new PoolCounters();
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 3, cloud: c => c.FailTrust = true);
        await bed.UntilWorkersAsync("Ready", 1);
        var first = (await bed.WorkersAsync()).Single().CorrelationId;
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == first), "the failed worker's deprovisioning");

        bed.Cloud.FailTrust = false;
        await Until(() => bed.Outcomes(leaseId).Count == 1, "the grant by a replacement");
        await bed.SettledAsync();

        // A replacement may also have failed before the switch: every trust but the last one failed.
        Assert.IsType<LeaseGranted>(bed.Outcomes(leaseId)[0]);
        Assert.True(counters.Total("dw_trust_failures_total") >= 1);
        Assert.Equal(bed.Cloud.Trusted.Count - 1, counters.Total("dw_trust_failures_total"));
        Assert.Equal(0, counters.Total("dw_provision_failures_total"));
    }

    [Fact]
    public async Task A_timed_out_trust_counts_in_dw_trust_failures_total()
    {
        using var counters = new PoolCounters();
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 3, cloud: c => c.HoldTrust = true);
        await bed.UntilWorkersAsync("Ready", 1);
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await Until(() => bed.Cloud.Trusted.Count == 1, "the trust request");
        bed.Cloud.HoldTrust = false;
        Assert.Equal(0, counters.Total("dw_trust_failures_total"));

        // Trust has no timer of its own: the sweep gives it up once it is overdue.
        await bed.AdvanceAsync(TimeSpan.FromMinutes(7));
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));
        // The lease's outcome may come before the worker handled its timeout: wait for the count itself.
        await Until(() => counters.Total("dw_trust_failures_total") >= 1, "the timed-out trust counted");
        await Until(() => bed.Outcomes(leaseId).Count == 1, "the lease's outcome");
        await bed.SettledAsync();

        Assert.Equal(1, counters.Total("dw_trust_failures_total"));
    }

    /// <summary>Sums the service's long counters for the test pool, by instrument name.</summary>
    sealed class PoolCounters : IDisposable
    {
        readonly MeterListener _listener = new();
        readonly ConcurrentDictionary<string, long> _totals = new();

        public PoolCounters()
        {
            _listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == DwTelemetry.Name)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            {
                if (tags.ToArray().Contains(new("pool", Pool)))
                {
                    _totals.AddOrUpdate(instrument.Name, value, (_, total) => total + value);
                }
            });
            _listener.Start();
        }

        public long Total(string name) => _totals.GetValueOrDefault(name);

        public void Dispose() => _listener.Dispose();
    }
}
